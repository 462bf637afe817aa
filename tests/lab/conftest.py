"""Labs under test: every lab gets a name unique to this run and its own state directory, and is
taken down (and proven gone) after the test, whether it passed or not."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Callable, Iterator

import pytest

from netkit.runtime import state
from netkit.runtime.root import Root
from tests import sandbox as sb

SCENARIOS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "scenarios")
SHIPPED = sorted(f[:-5] for f in os.listdir(SCENARIOS) if f.endswith(".yaml"))


class Lab:
    """`netkit lab ... FILE --name NAME --state-dir DIR` for one lab."""

    def __init__(self, path: str, name: str, state_dir: str) -> None:
        self.path, self.name, self.state_dir = path, name, state_dir
        # No warm agent: the lab's plugins answer in-process (the agent path has its own suites).
        self.env = dict(os.environ, NETKIT_AGENT_SOCKET="/nonexistent/netkit-agent.sock")

    def __call__(self, command: str, *args: str, path: str = "", check: bool = True,
                 timeout: float = 300) -> subprocess.CompletedProcess[str]:
        # Options before FILE: `lab exec` stops parsing options at its first argument.
        argv = [sys.executable, "-m", "netkit", "lab", command, "--name", self.name, "--state-dir", self.state_dir,
                path or self.path, *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self.env)
        assert "Traceback" not in proc.stderr, proc.stderr
        if check:
            assert proc.returncode == 0, f"{command}: {proc.stdout}\n{proc.stderr}"
        return proc

    def namespaces(self) -> list[str]:
        """This lab's namespaces on the machine."""
        return [line.split()[0] for line in sb.ip("netns", "list").stdout.splitlines()
                if line.startswith(f"nkl-{self.name}-") or line.startswith(f"nkl-{self.name}.")]

    def host_ns(self, host: str) -> str:
        return f"/run/netns/nkl-{self.name}-{host}"

    def root(self, host: str) -> str:
        return os.path.join(self.state_dir, self.name, "hosts", host)


def container_pids(lab: Lab) -> list[int]:
    """The processes of every container the lab's hosts recorded."""
    hosts = os.path.join(lab.state_dir, lab.name, "hosts")
    pids = []
    for host in os.listdir(hosts) if os.path.isdir(hosts) else []:
        pids += [r.pid for r in state.all_records(Root(os.path.join(hosts, host))) if r.pid]
    return pids


def lab_leftovers(lab: Lab, pids: list[int]) -> list[str]:
    """What of ``lab`` is still on the machine: namespaces, state, and any of ``pids`` still running."""
    out = [f"netns {n}" for n in lab.namespaces()]
    if os.path.exists(os.path.join(lab.state_dir, lab.name)):
        out.append(f"state {os.path.join(lab.state_dir, lab.name)}")
    out += [f"process {pid}" for pid in pids if os.path.exists(f"/proc/{pid}/ns/net")]
    return out


@pytest.fixture
def make_lab(tmp_path: os.PathLike[str]) -> Iterator[Callable[[str], Lab]]:
    """Returns make(scenario path) -> Lab; every lab made is taken down at teardown and must leave nothing."""
    if os.geteuid() != 0:
        pytest.fail("lab tests need root")
    made: list[Lab] = []

    def make(path: str) -> Lab:
        lab = Lab(path, f"{sb.RUN_PREFIX}-{len(made)}", os.path.join(str(tmp_path), "labs"))
        made.append(lab)
        return lab

    yield make
    for lab in made:
        pids = container_pids(lab)
        lab("down", check=False)
        left = lab_leftovers(lab, pids)
        for ns in lab.namespaces():
            sb.ip("netns", "del", ns, check=False)
        assert not left, f"lab down left: {left}"


def scenario(name: str) -> str:
    """The path of a shipped scenario."""
    return os.path.join(SCENARIOS, f"{name}.yaml")
