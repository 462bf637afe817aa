"""A containerd of harness/containerd.py (or its CRI form, harness/cricontainerd.py) for one test:
netkit's plugins installed with the default conflist, in a throwaway sandbox host, the agent the
first plugin exec starts stopped afterwards, and nothing of containerd's left (the test fails if so)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
from typing import Any, Callable, Iterator, TypeVar

import pytest

from harness import containerd as hc
from harness.agent import stop_started
from tests import sandbox as sb

C = TypeVar("C", bound=hc.Containerd)


@contextlib.contextmanager
def running(tmp: str, subnet: ipaddress.IPv4Network, kind: type[C],
            subnet6: ipaddress.IPv6Network | None = None,
            edit: Callable[[dict[str, Any]], None] | None = None) -> Iterator[tuple[C, sb.Sandbox]]:
    """A started ``kind`` of containerd in a sandbox host, for ``subnet``'s default network (and
    ``subnet6``'s, the conflist changed by ``edit``: see hc.prepare)."""
    if hc.unmet():
        pytest.fail(hc.unmet(), pytrace=False)
    top, bin_dir, conf_dir, data_dir = hc.prepare(tmp, subnet, subnet6, edit, loopback=kind.LOOPBACK)
    agent_socket = os.path.join(tmp, "agent.sock")
    with sb.sandbox(bin_dir, data_dir) as box:
        daemon = kind(top, box.host.path, bin_dir, conf_dir, NETKIT_AGENT_SOCKET=agent_socket)
        try:
            daemon.start()
            yield daemon, box
        finally:
            problems = daemon.teardown()
            stop_started(agent_socket)  # also one still warming up (its lock taken, its socket not yet bound)
        assert not problems, problems
