"""Run what a user types as on a fresh machine: in throwaway network, mount and PID namespaces.

``run(steps, fresh)`` starts ``unshare --net --mount --pid --fork --mount-proc`` with this file as
the new PID namespace's init.  Inside, before the first step:

- every directory of ``fresh`` is empty: a tmpfs is mounted on it when it exists, and when it does
  not, an overlay (writes go to a tmpfs) is mounted on its nearest existing parent, so the command
  can create it without the machine's directory tree gaining a mountpoint or anything else;
- ``lo`` is up and ``/sys`` shows the new namespace's interfaces, as on a booted machine.

The steps run one after the other with the environment given (no ``NETKIT_*`` of the suite's), and
their output goes to files, not pipes, so a daemon a step leaves cannot hold a step open.  When the
last step is done init exits: the kernel kills every process left in the PID namespace, the
network namespace and every mount go with them, and nothing the steps made stays on the machine.

As a script (the init): ``throwaway.py SPEC_JSON``; prints one JSON line, a result per step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field

# The PATH of a root login shell on Debian: nothing of this suite's venv.
LOGIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What netkit and its demo write by default: plugins, configs, state, leases and CNI cache, locks and
# port index, named network namespaces.
DEFAULT_DIRS = ("/opt/cni", "/etc/cni", "/var/lib/netkit", "/var/lib/cni", "/run/netkit", "/run/netns")


@dataclass
class Step:
    """One command, as a user would type it in a root shell."""

    argv: list[str]
    cwd: str = "/"
    env: dict[str, str] = field(default_factory=lambda: {"PATH": LOGIN_PATH, "HOME": "/root", "LANG": "C.UTF-8"})
    timeout: float = 300


@dataclass
class Result:
    """What a step did: its exit status (None if it timed out) and its output."""

    argv: list[str]
    returncode: int | None
    stdout: str
    stderr: str


def run(steps: list[Step], fresh: tuple[str, ...] = DEFAULT_DIRS, timeout: float = 600) -> list[Result]:
    """Run ``steps`` in one throwaway machine (see the module docstring); a result per step."""
    # The scratch directory is a mountpoint for a tmpfs of the namespace's own (overlay upper dirs,
    # step output): nothing is written to it on the machine's disk, and it is removed afterwards.
    with tempfile.TemporaryDirectory(prefix="netkit-throwaway-") as scratch:
        spec = {"fresh": list(fresh), "scratch": scratch, "steps": [asdict(s) for s in steps]}
        argv = ["unshare", "--net", "--mount", "--propagation", "private", "--pid", "--fork", "--mount-proc", "--",
                sys.executable, "-I", os.path.abspath(__file__), json.dumps(spec)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"throwaway machine failed ({proc.returncode}): {proc.stderr.strip()}")
    return [Result(**r) for r in json.loads(proc.stdout.splitlines()[-1])]


# ---- inside the namespaces (this file as PID 1) ------------------------------------------------------

def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def _nearest_existing(path: str) -> str:
    while not os.path.isdir(path):
        path = os.path.dirname(path)
    return path


def _fresh(dirs: list[str], scratch: str) -> None:
    """Empty ``dirs``: overlays on the parents of missing ones first (an overlay would hide a tmpfs
    mounted below it before), then a tmpfs on each that exists."""
    parents = sorted({_nearest_existing(d) for d in dirs if not os.path.isdir(d)})
    for n, parent in enumerate(parents):
        upper, work = os.path.join(scratch, f"upper{n}"), os.path.join(scratch, f"work{n}")
        os.makedirs(upper)
        os.makedirs(work)
        _mount("-t", "overlay", "overlay", "-o", f"lowerdir={parent},upperdir={upper},workdir={work}", parent)
    for d in dirs:
        if os.path.isdir(d):
            _mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", d)


def _step(step: dict, out_dir: str, n: int) -> dict:
    out, err = os.path.join(out_dir, f"{n}.out"), os.path.join(out_dir, f"{n}.err")
    with open(out, "w") as fo, open(err, "w") as fe:
        try:
            code: int | None = subprocess.run(step["argv"], cwd=step["cwd"], env=step["env"], stdin=subprocess.DEVNULL,
                                              stdout=fo, stderr=fe, timeout=step["timeout"]).returncode
        except subprocess.TimeoutExpired:
            code = None
        except OSError as exc:
            code, _ = 127, fe.write(f"throwaway: {exc}\n")
    with open(out, errors="replace") as fo, open(err, errors="replace") as fe:
        return {"argv": step["argv"], "returncode": code, "stdout": fo.read(), "stderr": fe.read()}


def main(spec: dict) -> None:
    scratch = spec["scratch"]
    _mount("-t", "tmpfs", "-o", "mode=0700,size=64m", "tmpfs", scratch)
    _fresh(spec["fresh"], scratch)
    _mount("-t", "sysfs", "sysfs", "/sys")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    out_dir = os.path.join(scratch, "out")
    os.makedirs(out_dir)
    results = [_step(step, out_dir, n) for n, step in enumerate(spec["steps"])]
    print(json.dumps(results))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
