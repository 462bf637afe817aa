"""Where a new network goes: the private subnet pools and the default network's bridge name.

Docker's rule: a new network takes the first /16 of the pool that overlaps no route of the host
(and, for a runtime, no network it already has), so containers never shadow a reachable subnet.
`netkit cni install` draws from Docker's default pool; the runtime, which makes a network per
`netkit network create`, goes on into 10.100-199.0.0/16 once that is used up.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, Sequence

DEFAULT_BRIDGE = "netkit0"  # the default network's bridge, the docker0 of netkit
# Docker's docker0 default, then the rest of its default pool of /16s, in order.
DOCKER_SUBNETS = [ipaddress.ip_network(f"172.{n}.0.0/16") for n in range(17, 32)]
RUNTIME_SUBNETS = DOCKER_SUBNETS + [ipaddress.ip_network(f"10.{n}.0.0/16") for n in range(100, 200)]


class PoolExhausted(ValueError):
    """Every subnet of the pool overlaps something already in use."""


def choose_subnet(taken: Iterable[ipaddress.IPv4Network],
                  candidates: Sequence[ipaddress.IPv4Network] = DOCKER_SUBNETS) -> ipaddress.IPv4Network:
    """The first candidate that overlaps none of ``taken`` (routes, existing networks)."""
    used = list(taken)
    for candidate in candidates:
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise PoolExhausted(f"every subnet of {candidates[0]} .. {candidates[-1]} overlaps a route on this host")
