"""Fixtures for fault-injection tests: dedicated agents with their own environment (the in-process
sandboxes are tests/conftest.py's inproc and fw_inproc).

``NETKIT_FULL=1`` runs the long forms (200+ kill trials, 2,000 soak cycles); the default run is a
reduced form of each, so the suite stays fast.
"""

from __future__ import annotations

import os
from typing import Callable, Iterator

import pytest

from harness.agent import Agent
from tests.sandbox import FULL  # noqa: F401 - the long forms' switch, used by the fault tests

__all__ = ["FULL", "Agent"]


@pytest.fixture
def agents(tmp_path: os.PathLike[str]) -> Iterator[Callable[..., Agent]]:
    """Start dedicated agents (harness/agent.py) with our environment plus ``env``:
    ``agents(NETKIT_FAILPOINTS="...")``; all stopped at teardown."""
    made: list[Agent] = []

    def start(path: str = "", **env: str) -> Agent:
        """A new agent; ``path`` reuses a dead one's socket path (a restart)."""
        agent = Agent(path or os.path.join(str(tmp_path), f"agent{len(made)}.sock"), dict(os.environ, **env))
        made.append(agent)
        return agent.start()

    yield start
    for agent in made:
        agent.stop()
