"""Fixtures for fault-injection tests: dedicated agents with their own environment (the in-process
sandboxes are tests/conftest.py's inproc and fw_inproc).

``NETKIT_FULL=1`` runs the long forms (200+ kill trials, 2,000 soak cycles); the default run is a
reduced form of each, so the suite stays fast.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Callable, Iterator

import pytest

from tests.sandbox import FULL  # noqa: F401 - the long forms' switch, used by the fault tests



class Agent:
    """A dedicated `netkit agent` process (own socket, own environment) that a test may kill."""

    def __init__(self, path: str, env: dict[str, str]) -> None:
        self.path, self.env = path, env
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> "Agent":
        """Start the agent and wait until its socket accepts."""
        with_env = dict(os.environ, **self.env)
        if os.path.exists(self.path):
            os.unlink(self.path)  # a dead agent's stale socket: readiness is the new one appearing
        self.proc = subprocess.Popen([sys.executable, "-m", "netkit", "agent", "--socket", self.path],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=with_env)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"netkit agent did not start: {self.proc.stderr.read() if self.proc.stderr else ''}")
            time.sleep(0.02)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: what a crash or the OOM killer does (the socket file stays, stale)."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if os.path.exists(self.path):
            os.unlink(self.path)


@pytest.fixture
def agents(tmp_path: os.PathLike[str]) -> Iterator[Callable[..., Agent]]:
    """Start dedicated agents: ``agents(NETKIT_FAILPOINTS="...")``; all stopped at teardown."""
    made: list[Agent] = []

    def start(path: str = "", **env: str) -> Agent:
        """A new agent; ``path`` reuses a dead one's socket path (a restart)."""
        agent = Agent(path or os.path.join(str(tmp_path), f"agent{len(made)}.sock"), env)
        made.append(agent)
        return agent.start()

    yield start
    for agent in made:
        agent.stop()
