"""Sandbox hosts for the security checks: plugins in-process (the agent serves the same handler, and
tests/plugins runs every firewall case through it), on each firewall backend."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests import sandbox as sb
from tests.fuzz.conftest import host  # noqa: F401 - the in-process sandbox host, shared


@pytest.fixture(params=["nftables", "iptables"])
def fw_host(request: pytest.FixtureRequest, host: sb.Sandbox) -> Iterator[sb.Sandbox]:  # noqa: F811
    """A throwaway in-process sandbox host whose plugins use one firewall backend."""
    host.firewall = request.param
    yield host
