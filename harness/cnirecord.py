"""Record what a runtime hands a CNI plugin: the plugin's executable is swapped for a recorder that
appends one JSON line (CNI_COMMAND, CNI_ARGS, CNI_IFNAME, the config on stdin) to a file, then execs
the plugin with the same environment and stdin.  tests/e2e/test_cri.py uses it to see exactly what
containerd's CRI plugin (go-cni) sends netkit: CNI_ARGS' K8S_POD_* keys and the ``runtimeConfig``
libcni builds from the pod's port mappings.

The recorder is a few lines of Python run by this interpreter (an exec more per plugin call: for
tests only, never timed).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from typing import Any

RECORDED_DIR = ".recorded"   # under the bin dir: the plugins recorded, moved aside
RECORDER = '''#!{python}
# Written by harness/cnirecord.py for one test run: records this call, then runs the plugin.
import fcntl, json, os, sys
stdin = sys.stdin.buffer.read()
line = json.dumps({{"plugin": {name!r}, "command": os.environ.get("CNI_COMMAND", ""),
                   "args": os.environ.get("CNI_ARGS", ""), "ifname": os.environ.get("CNI_IFNAME", ""),
                   "containerid": os.environ.get("CNI_CONTAINERID", ""), "stdin": stdin.decode()}})
with open({record!r}, "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)  # calls run in parallel (go-cni attaches its networks at once)
    f.write(line + "\\n")
r, w = os.pipe()  # the plugin's stdin as it was: one config, far below a pipe's buffer
os.write(w, stdin)
os.close(w)
os.dup2(r, 0)
os.execv({target!r}, [{target!r}, *sys.argv[1:]])
'''


@dataclass
class Call:
    """One recorded plugin call."""

    plugin: str
    command: str
    args: dict[str, str]      # CNI_ARGS, split at ';' and '='
    ifname: str
    containerid: str
    config: dict[str, Any]    # the network config on stdin


def record(bin_dir: str, plugins: list[str], record_file: str) -> None:
    """Put a recorder in front of each of ``plugins`` in ``bin_dir``, appending to ``record_file``."""
    aside = os.path.join(bin_dir, RECORDED_DIR)
    os.makedirs(aside, exist_ok=True)
    for name in plugins:
        path = os.path.join(bin_dir, name)
        target = os.path.join(aside, name)
        # A symlink (loopback -> netkit-loopback) moves as the link; resolved, it still names the plugin.
        real = os.path.realpath(path)
        if os.path.islink(path):
            os.unlink(path)
            os.symlink(real, target)
        else:
            shutil.move(path, target)
        with open(path, "w") as f:
            f.write(RECORDER.format(python=sys.executable, name=name, record=record_file, target=target))
        os.chmod(path, 0o755)


def calls(record_file: str) -> list[Call]:
    """The calls recorded so far, in order."""
    if not os.path.exists(record_file):
        return []
    out = []
    with open(record_file) as f:
        for line in f:
            raw = json.loads(line)
            args = dict(kv.partition("=")[::2] for kv in raw["args"].split(";") if kv)
            out.append(Call(raw["plugin"], raw["command"], args, raw["ifname"], raw["containerid"],
                            json.loads(raw["stdin"]) if raw["stdin"].strip() else {}))
    return out
