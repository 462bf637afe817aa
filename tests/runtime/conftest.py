"""A netkit runtime inside a sandbox host: its own --root, run through nsenter or ``ip netns exec``.

nsenter keeps the runtime in the machine's mount namespace, so the network namespaces it binds
under its root outlive each command, as they do for a real host.  ``ip netns exec`` (what many
users type) gives each command a private mount namespace that ends with it: ``rt_ip_netns_exec``
runs the installed console script that way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Iterator

import pytest

from netkit.runtime import state
from netkit.runtime.root import Root
from tests.sandbox import Namespace, Sandbox

# The console script users type, as installed in this venv by ./setup.sh.
CONSOLE_SCRIPT = os.path.join(os.path.dirname(sys.executable), "netkit")


class Runtime:
    """Runs `netkit --root ROOT ...` inside the sandbox host."""

    def __init__(self, box: Sandbox, root: str) -> None:
        self.box, self.root = box, root

    def assert_nothing_left(self) -> None:
        """No namespace bind mount, veth, lease, rule chain or container record is left."""
        assert os.listdir(os.path.join(self.root, "netns")) == []
        assert [n for n in self.box.host.links() if n.startswith("nk") and n != "netkit0"] == []
        leases = os.path.join(self.root, "ipam", "bridge")
        assert [f for f in os.listdir(leases) if f[0].isdigit()] == []
        assert self.box.group_chains() == []
        assert self("ps", "-a").stdout.count("\n") == 1

    def argv(self, *args: str) -> list[str]:
        return ["nsenter", f"--net={self.box.host.path}", sys.executable, "-m", "netkit", "--root", self.root, *args]

    @property
    def env(self) -> dict[str, str]:
        """The runtime's environment: the plugins it execs use the sandbox's agent, if any, and its
        firewall backend when one is chosen (plugins running in-process read it from here)."""
        env = dict(os.environ, NETKIT_AGENT_SOCKET=self.box.agent_socket or "/nonexistent/netkit-agent.sock")
        if self.box.firewall:
            env["NETKIT_FIREWALL_BACKEND"] = self.box.firewall
        return env

    def __call__(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout, env=self.env)
        assert "Traceback" not in proc.stderr, proc.stderr
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env)

    def inspect(self, name: str) -> dict:
        return json.loads(self("inspect", name).stdout)[0]

    def ip(self, name: str) -> str:
        return self.inspect(name)["NetworkSettings"]["Addresses"][0].split("/")[0]

    def netns(self, name: str) -> Namespace:
        """The network namespace of container ``name`` (bound under the runtime's root), for traffic checks."""
        return Namespace(name, bound_at=self.inspect(name)["NetworkSettings"]["SandboxKey"])

    def wait_answer(self, check: "callable", timeout: float = 60) -> bool:  # type: ignore[valid-type]
        """Poll ``check()`` until it holds; ``timeout`` only stops a hung test (a server that never
        comes up), it is no bound on how fast one does: the poll ends at the first success."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return True
            time.sleep(0.1)
        return False

    def cleanup(self) -> None:
        """Force-remove every container of the root, then whatever namespaces are still bound.

        A container whose `rm -f` failed is killed by its recorded PID: its process (and, under
        ``ip netns exec``, its supervisor) would otherwise keep the sandbox's namespaces alive.
        """
        records = os.path.join(self.root, "containers")
        for cid in os.listdir(records) if os.path.isdir(records) else []:
            # Not self(): its traceback assertion would stop the cleanup at the first broken record.
            subprocess.run(self.argv("rm", "-f", cid), capture_output=True, timeout=60, env=self.env)
        for rec in state.all_records(Root(self.root)):
            if state.alive(rec):
                os.kill(rec.pid, signal.SIGKILL)
        netns_dir = os.path.join(self.root, "netns")
        for name in os.listdir(netns_dir) if os.path.isdir(netns_dir) else []:
            subprocess.run(["umount", "-l", os.path.join(netns_dir, name)], capture_output=True)


class IpNetnsExecRuntime(Runtime):
    """Runs `ip netns exec HOST netkit --root ROOT ...` with the installed console script."""

    def argv(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.box.host.name, CONSOLE_SCRIPT, "--root", self.root, *args]


@pytest.fixture
def rt_ip_netns_exec(box: Sandbox, tmp_path: os.PathLike[str]) -> Iterator[Runtime]:
    """A runtime whose every command runs as a user types it under `ip netns exec`."""
    if not os.access(CONSOLE_SCRIPT, os.X_OK):
        pytest.fail(f"the netkit console script is missing: {CONSOLE_SCRIPT} (run ./setup.sh deps)")
    runtime = IpNetnsExecRuntime(box, os.path.join(str(tmp_path), "root"))
    try:
        yield runtime
    finally:
        runtime.cleanup()


def _cleaned(runtime: Runtime) -> Iterator[Runtime]:
    """Yield ``runtime``, then remove whatever it left."""
    try:
        yield runtime
    finally:
        runtime.cleanup()


@pytest.fixture
def fw_rt(fw_inproc: Sandbox, tmp_path: os.PathLike[str]) -> Iterator[Runtime]:
    """A runtime whose plugins run in-process on one firewall backend (each test runs on both)."""
    yield from _cleaned(Runtime(fw_inproc, os.path.join(str(tmp_path), "root")))


@pytest.fixture
def rt(box: Sandbox, tmp_path: os.PathLike[str]) -> Iterator[Runtime]:
    """A runtime with its own root in a sandbox host that has an uplink to another machine."""
    yield from _cleaned(Runtime(box, os.path.join(str(tmp_path), "root")))
