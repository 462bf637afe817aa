"""The IPAM section of a network config, with host-local's keys and defaults."""

from __future__ import annotations

import ipaddress
from typing import Any, Iterator, NamedTuple

from netkit import errors

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_DATA_DIR = "/var/lib/cni/networks"


def _bad(msg: str, details: str = "") -> errors.CNIError:
    return errors.CNIError(errors.INVALID_CONFIG, msg, details)


class Range(NamedTuple):
    """One subnet with the slice of it that may be handed out."""

    subnet: Network
    start: Address
    end: Address
    gateway: Address | None

    def __contains__(self, addr: Address) -> bool:
        return addr.version == self.subnet.version and self.start <= addr <= self.end

    def addresses(self, first: Address | None = None) -> Iterator[Address]:
        """The addresses of the range that may be handed out, in order, from ``first`` (or the start)."""
        kind = type(self.start)
        begin = int(first) if first is not None and first in self else int(self.start)
        for value in range(begin, int(self.end) + 1):
            addr = kind(value)
            if addr != self.gateway:
                yield addr

    def size(self) -> int:
        """How many addresses the range can hand out."""
        gw = 1 if self.gateway is not None and self.gateway in self else 0
        return int(self.end) - int(self.start) + 1 - gw


class Route(NamedTuple):
    """A route the container should get."""

    dst: Network
    gw: Address | None = None

    def to_result(self) -> dict[str, str]:
        """The route as a CNI result entry."""
        out = {"dst": str(self.dst)}
        if self.gw is not None:
            out["gw"] = str(self.gw)
        return out


class IPAMConfig(NamedTuple):
    """The parsed ``ipam`` object."""

    range_sets: list[list[Range]]
    routes: list[Route]
    data_dir: str = DEFAULT_DATA_DIR
    resolv_conf: str = ""


def _address(value: object, what: str) -> Address:
    try:
        return ipaddress.ip_address(str(value))
    except ValueError:
        raise _bad(f"invalid {what}", repr(value)) from None


def parse_range(raw: object) -> Range:
    """Parse one range object ``{subnet, rangeStart, rangeEnd, gateway}``."""
    if not isinstance(raw, dict) or "subnet" not in raw:
        raise _bad("invalid range: needs a subnet", repr(raw)[:200])
    try:
        subnet = ipaddress.ip_network(str(raw["subnet"]), strict=False)
    except ValueError:
        raise _bad("invalid subnet", repr(raw["subnet"])) from None
    if subnet.version == 4 and subnet.prefixlen > 30 or subnet.version == 6 and subnet.prefixlen > 126:
        raise _bad("subnet too small to hand out addresses", str(subnet))
    last = subnet.broadcast_address - 1 if subnet.version == 4 else subnet.broadcast_address
    start = _address(raw["rangeStart"], "rangeStart") if raw.get("rangeStart") else subnet.network_address + 1
    end = _address(raw["rangeEnd"], "rangeEnd") if raw.get("rangeEnd") else last
    gateway = _address(raw["gateway"], "gateway") if raw.get("gateway") else subnet.network_address + 1
    for name, addr in (("rangeStart", start), ("rangeEnd", end), ("gateway", gateway)):
        if addr not in subnet or addr == subnet.network_address or subnet.version == 4 and addr == subnet.broadcast_address:
            raise _bad(f"{name} {addr} is not a usable address of {subnet}")
    if start > end:
        raise _bad("rangeStart is after rangeEnd", f"{start} > {end}")
    return Range(subnet, start, end, gateway)


def parse_route(raw: object) -> Route:
    """Parse one ``{dst, gw}`` route."""
    if not isinstance(raw, dict) or "dst" not in raw:
        raise _bad("invalid route: needs dst", repr(raw)[:200])
    try:
        dst = ipaddress.ip_network(str(raw["dst"]), strict=False)
    except ValueError:
        raise _bad("invalid route dst", repr(raw["dst"])) from None
    gw = _address(raw["gw"], "route gw") if raw.get("gw") else None
    return Route(dst, gw)


def parse(config: dict[str, Any]) -> IPAMConfig:
    """Parse the ``ipam`` object of a network config (host-local's keys, old single-range form too)."""
    ipam = config.get("ipam")
    if not isinstance(ipam, dict):
        raise _bad("network config has no ipam object")
    raw_sets = ipam.get("ranges")
    if raw_sets is None and "subnet" in ipam:
        raw_sets = [[{k: ipam[k] for k in ("subnet", "rangeStart", "rangeEnd", "gateway") if k in ipam}]]
    if not isinstance(raw_sets, list) or not raw_sets:
        raise _bad("ipam needs 'ranges' (a list of range sets) or 'subnet'")
    range_sets: list[list[Range]] = []
    for raw_set in raw_sets:
        if not isinstance(raw_set, list) or not raw_set:
            raise _bad("each entry of 'ranges' must be a non-empty list of ranges", repr(raw_set)[:200])
        parsed = [parse_range(r) for r in raw_set]
        if len({r.subnet.version for r in parsed}) != 1:
            raise _bad("a range set mixes IPv4 and IPv6")
        range_sets.append(parsed)
    every = [r for s in range_sets for r in s]
    for i, a in enumerate(every):
        for b in every[i + 1:]:
            if a.subnet.version == b.subnet.version and a.start <= b.end and b.start <= a.end:
                raise _bad("ranges overlap", f"{a.subnet} and {b.subnet}")
    routes_raw = ipam.get("routes") or []
    if not isinstance(routes_raw, list):
        raise _bad("ipam 'routes' must be a list")
    data_dir = ipam.get("dataDir") or DEFAULT_DATA_DIR
    if not isinstance(data_dir, str):
        raise _bad("ipam 'dataDir' must be a string")
    resolv_conf = ipam.get("resolvConf") or ""
    return IPAMConfig(range_sets, [parse_route(r) for r in routes_raw], data_dir, str(resolv_conf))
