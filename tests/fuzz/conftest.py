"""Properties run the handler in-process (no agent variant needed): ``host`` is the in-process sandbox."""

from __future__ import annotations

import pytest

from tests import sandbox as sb


@pytest.fixture
def host(inproc: sb.Sandbox) -> sb.Sandbox:
    """A throwaway sandbox host whose plugins always answer in-process (tests/conftest.py's inproc)."""
    return inproc
