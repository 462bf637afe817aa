"""A sandbox host for properties that run the handler in-process (no agent variant needed)."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from tests import sandbox as sb


@pytest.fixture
def host(plugin_bin: str, tmp_path: os.PathLike[str]) -> Iterator[sb.Sandbox]:
    """A throwaway sandbox host whose plugins always answer in-process."""
    if os.geteuid() != 0:
        pytest.fail("namespace tests need root")
    with sb.sandbox(plugin_bin, os.path.join(str(tmp_path), "leases")) as box:
        yield box
