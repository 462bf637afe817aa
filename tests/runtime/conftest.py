"""A netkit runtime inside a sandbox host: its own --root, run through nsenter.

nsenter (not ``ip netns exec``) keeps the runtime in the machine's mount namespace, so the network
namespaces it binds under its root outlive each command, as they do for a real host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Iterator

import pytest

from tests.sandbox import Namespace, Sandbox


class Runtime:
    """Runs `netkit --root ROOT ...` inside the sandbox host."""

    def __init__(self, box: Sandbox, root: str) -> None:
        self.box, self.root = box, root

    def argv(self, *args: str) -> list[str]:
        return ["nsenter", f"--net={self.box.host.path}", sys.executable, "-m", "netkit", "--root", self.root, *args]

    @property
    def env(self) -> dict[str, str]:
        """The runtime's environment: the plugins it execs use the sandbox's agent, if any."""
        return dict(os.environ, NETKIT_AGENT_SOCKET=self.box.agent_socket or "/nonexistent/netkit-agent.sock")

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
        """Force-remove every container of the root, then whatever namespaces are still bound."""
        records = os.path.join(self.root, "containers")
        for cid in os.listdir(records) if os.path.isdir(records) else []:
            # Not self(): its traceback assertion would stop the cleanup at the first broken record.
            subprocess.run(self.argv("rm", "-f", cid), capture_output=True, timeout=60, env=self.env)
        netns_dir = os.path.join(self.root, "netns")
        for name in os.listdir(netns_dir) if os.path.isdir(netns_dir) else []:
            subprocess.run(["umount", "-l", os.path.join(netns_dir, name)], capture_output=True)


@pytest.fixture
def rt(box: Sandbox, tmp_path: os.PathLike[str]) -> Iterator[Runtime]:
    """A runtime with its own root in a sandbox host that has an uplink to another machine."""
    runtime = Runtime(box, os.path.join(str(tmp_path), "root"))
    try:
        yield runtime
    finally:
        runtime.cleanup()
