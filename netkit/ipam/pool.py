"""Where a new network goes: the private subnet pools and the default network's bridge name.

Docker's rule: a new network takes the first /16 of the pool that overlaps no route of the host
(and, for a runtime, no network it already has), so containers never shadow a reachable subnet.
`netkit cni install` draws from Docker's default pool; the runtime, which makes a network per
`netkit network create`, goes on into 10.100-199.0.0/16 once that is used up.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Callable, Iterable, Sequence

DEFAULT_BRIDGE = "netkit0"  # the default network's bridge, the docker0 of netkit
# Docker's docker0 default, then the rest of its default pool of /16s, in order.
DOCKER_SUBNETS = [ipaddress.ip_network(f"172.{n}.0.0/16") for n in range(17, 32)]
RUNTIME_SUBNETS = DOCKER_SUBNETS + [ipaddress.ip_network(f"10.{n}.0.0/16") for n in range(100, 200)]


# Unique local addresses (RFC 4193): fd00::/8, a random 40-bit global ID per network, its subnet 0.
ULA = ipaddress.ip_network("fd00::/8")
_ULA_TRIES = 16


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


def choose_ula(taken: Iterable[ipaddress.IPv6Network],
               random_bytes: Callable[[int], bytes] = os.urandom) -> ipaddress.IPv6Network:
    """A unique local /64 (RFC 4193: fd, 40 random bits, subnet 0) overlapping none of ``taken``.

    Random rather than the next free one, as the RFC asks: two hosts (or two runtimes) that route
    to each other's containers later do not collide.
    """
    used = [u for u in taken if u.version == 6]
    for _ in range(_ULA_TRIES):
        global_id = int.from_bytes(random_bytes(5), "big")
        candidate = ipaddress.IPv6Network(((0xFD << 120) | (global_id << 80), 64))
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise PoolExhausted(f"no free /64 in {ULA} after {_ULA_TRIES} random tries")
