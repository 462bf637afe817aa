"""The route keeper: one route per other node, ``podCIDR via InternalIP``, in the main table.

Every route it makes carries netkit's own route protocol number (``PROTOCOL``, shown by ``ip route``
as ``proto 78``), and it only ever reads back, replaces or deletes routes with that number: a route
the administrator or another daemon made is never touched, even one to the same subnet.  What to
route is checked first, and refused (one line) instead of installed: a podCIDR another node (or this
one) also claims, one that a route netkit did not make already covers as exactly or more specifically
(of any type: a blackhole or unreachable entry too) or that is on a directly connected network, and
a gateway that is this node's own address or not on a directly connected network.  A broader route
through a gateway (a corporate ``10.0.0.0/8 via ...``) is no obstacle: the podCIDR is longer, so it
wins the lookup.  A new route is added exclusively (the kernel refuses it when any route with that
destination and metric exists), so only a route netkit made is ever replaced.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from netkit.net.netlink import IPRoute, NetlinkError
from netkit.node import model

# netkit's rtnetlink route protocol (rtm_protocol): unassigned in iproute2's rt_protos (which names
# 0-18, 42, 99, 186-192), so nothing else marks its routes with it.
PROTOCOL = 78
MAIN_TABLE = 254
_FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}


@dataclass(frozen=True)
class Want:
    """One route to keep: another node's pod subnet through that node's InternalIP."""

    dst: model.Network
    via: model.Address
    node: str


@dataclass
class Outcome:
    """What one ``sync`` did (one line per change) and what it refused (one line per reason)."""

    changes: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def _clash(node: model.Node, cidr: model.Network, nodes: list[model.Node], own: str) -> str | None:
    """The first other node (this one first) whose podCIDRs overlap ``cidr``, named for the line."""
    for other in sorted(nodes, key=lambda n: (n.name != own, n.name)):
        if other.name != node.name and any(c.version == cidr.version and c.overlaps(cidr) for c in other.pod_cidrs):
            return f"node {other.name}'s (this node)" if other.name == own else f"node {other.name}'s"
    return None


def plan(own: str, nodes: Iterable[model.Node]) -> tuple[list[Want], list[str]]:
    """The routes every node but ``own`` needs, and a line for each subnet that cannot be routed
    (no pod subnet yet, no InternalIP of the subnet's family, a subnet overlapping another node's
    or this node's: which node owns those addresses is unknown, and two routes to one destination
    would replace each other at every apply)."""
    wants: list[Want] = []
    refused: list[str] = []
    everyone = list(nodes)
    for node in sorted(everyone, key=lambda n: n.name):
        if node.name == own:
            continue
        if not node.pod_cidrs:
            refused.append(f"node {node.name}: no podCIDR yet, no route to it")
        for cidr in node.pod_cidrs:
            clash = _clash(node, cidr, everyone, own)
            if clash is not None:
                refused.append(f"node {node.name}: podCIDR {cidr} overlaps {clash}, not routed")
                continue
            via = node.internal_ip(cidr.version)
            if via is None:
                refused.append(f"node {node.name}: no IPv{cidr.version} InternalIP for podCIDR {cidr}")
            else:
                wants.append(Want(cidr, via, node.name))
    return wants, refused


def _dst(msg: Any) -> model.Network:
    family_any = "0.0.0.0" if msg["family"] == socket.AF_INET else "::"
    return ipaddress.ip_network(f"{msg.get('dst') or family_any}/{msg['dst_len']}")


# rtm_type values (linux/rtnetlink.h) a main-table route may have, named as ``ip route`` shows them.
_UNICAST, _LOCAL = 1, 2
_TYPES = {_UNICAST: "", 6: "blackhole ", 7: "unreachable ", 8: "prohibit ", 9: "throw "}


@dataclass(frozen=True)
class _Foreign:
    """A main-table route netkit did not make: its destination, kind and whether it is directly
    connected (a unicast route without a gateway: its addresses are on a link of this node)."""

    dst: model.Network
    kind: str
    connected: bool


def _main_routes(ipr: Any) -> list[Any]:
    # Every type: a blackhole or unreachable route the administrator made is as much theirs as a
    # unicast one (local and broadcast entries live in the local table, not here).
    out = []
    for family in _FAMILIES.values():
        out += [m for m in ipr.get_routes(family=family) if m.get("table") == MAIN_TABLE]
    return out


def _gateway(msg: Any) -> str | None:
    # A multipath route carries its gateways in RTA_MULTIPATH, not RTA_GATEWAY.
    return msg.get("gateway") or (msg.get("multipath") and "multipath")


def ours(ipr: Any) -> dict[model.Network, model.Address | None]:
    """The routes netkit made: destination -> gateway."""
    return {_dst(m): (ipaddress.ip_address(m.get("gateway")) if m.get("gateway") else None)
            for m in _main_routes(ipr) if m["proto"] == PROTOCOL}


def _foreign(ipr: Any) -> list[_Foreign]:
    return [_Foreign(_dst(m), _TYPES.get(m["type"], f"type {m['type']} "),
                     m["type"] == _UNICAST and not _gateway(m))
            for m in _main_routes(ipr) if m["proto"] != PROTOCOL]


def _gateway_problem(ipr: Any, via: model.Address) -> str | None:
    """Why ``via`` cannot be a gateway: this node's own address, or not reached directly (its
    route has a gateway of its own, or there is none)."""
    try:
        got = ipr.route("get", dst=str(via))
    except NetlinkError:
        got = []
    if got and got[0]["type"] == _LOCAL:
        return "is this node's own address"
    if not got or got[0].get("gateway") or got[0]["type"] != _UNICAST:
        return "is not on-link"
    return None


def _refusal(want: Want, foreign: list[_Foreign], ipr: Any) -> str | None:
    for route in foreign:
        net = route.dst
        if net.version != want.dst.version:
            continue
        # Equal or more specific: it decides (some of) the pod subnet's traffic whatever netkit adds.
        # Broader and directly connected: the subnet's addresses are on a link here, not behind a node.
        # A broader route through a gateway loses the lookup to the podCIDR: no obstacle.
        if net.subnet_of(want.dst) or (route.connected and net.prefixlen > 0 and want.dst.subnet_of(net)):  # type: ignore[arg-type]
            return f"node {want.node}: podCIDR {want.dst} overlaps host route {route.kind}{net}, not routed"
    problem = _gateway_problem(ipr, want.via)
    if problem:
        return f"node {want.node}: InternalIP {want.via} {problem}, no route to {want.dst}"
    return None


def sync(wants: list[Want], ipr: Any | None = None) -> Outcome:
    """Make the routes netkit keeps in the current network namespace exactly ``wants``: add the
    missing, replace a wrong gateway, delete the ones no longer wanted (a node deleted, a subnet
    refused).  Never touches a route without netkit's protocol number."""
    own_socket = ipr is None
    ipr = IPRoute() if ipr is None else ipr
    try:
        return _sync(ipr, wants)
    finally:
        if own_socket:
            ipr.close()


def _sync(ipr: Any, wants: list[Want]) -> Outcome:
    outcome = Outcome()
    have = ours(ipr)
    foreign = _foreign(ipr)
    keep: set[model.Network] = set()
    for want in wants:
        why = _refusal(want, foreign, ipr)
        if why:
            outcome.refused.append(why)
            continue
        keep.add(want.dst)
        if have.get(want.dst, "absent") == want.via:
            continue
        verb = "added" if want.dst not in have else f"replaced (was via {have[want.dst]})"
        try:
            # "add" is exclusive (NLM_F_EXCL): a route with this destination and metric made since
            # the reading above (by anyone) is refused by the kernel, never overwritten.  "replace"
            # only where the route there is netkit's own.
            ipr.route("add" if want.dst not in have else "replace", dst=str(want.dst), gateway=str(want.via),
                      proto=PROTOCOL, table=MAIN_TABLE, family=_FAMILIES[want.dst.version])
        except NetlinkError as exc:
            outcome.refused.append(f"node {want.node}: route {want.dst} via {want.via}: {exc.args[-1]}")
            keep.discard(want.dst)
            continue
        outcome.changes.append(f"route {want.dst} via {want.via} (node {want.node}) {verb}")
    for dst, via in have.items():
        if dst in keep:
            continue
        try:
            ipr.route("del", dst=str(dst), proto=PROTOCOL, table=MAIN_TABLE, family=_FAMILIES[dst.version])
        except NetlinkError as exc:
            if exc.code != 3:  # ESRCH: already gone, which is what was wanted
                outcome.refused.append(f"route {dst} via {via}: could not remove: {exc.args[-1]}")
                continue
        outcome.changes.append(f"route {dst} via {via} removed")
    return outcome
