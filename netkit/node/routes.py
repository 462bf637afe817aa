"""The route keeper: one route per other node, ``podCIDR via InternalIP``, in the main table.

Every route it makes carries netkit's own route protocol number (``PROTOCOL``, shown by ``ip route``
as ``proto 78``), and it only ever reads back, replaces or deletes routes with that number: a route
the administrator or another daemon made is never touched, even one to the same subnet.  What to
route is checked first: a podCIDR that overlaps a route netkit did not make, or a gateway that is
not on a directly connected network, is refused (one line) instead of installed.
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


def plan(own: str, nodes: Iterable[model.Node]) -> tuple[list[Want], list[str]]:
    """The routes every node but ``own`` needs, and a line for each subnet that cannot be routed
    (no pod subnet yet, no InternalIP of the subnet's family)."""
    wants: list[Want] = []
    refused: list[str] = []
    for node in sorted(nodes, key=lambda n: n.name):
        if node.name == own:
            continue
        if not node.pod_cidrs:
            refused.append(f"node {node.name}: no podCIDR yet, no route to it")
        for cidr in node.pod_cidrs:
            via = node.internal_ip(cidr.version)
            if via is None:
                refused.append(f"node {node.name}: no IPv{cidr.version} InternalIP for podCIDR {cidr}")
            else:
                wants.append(Want(cidr, via, node.name))
    return wants, refused


def _dst(msg: Any) -> model.Network:
    family_any = "0.0.0.0" if msg["family"] == socket.AF_INET else "::"
    return ipaddress.ip_network(f"{msg.get('dst') or family_any}/{msg['dst_len']}")


def _main_routes(ipr: Any) -> list[Any]:
    out = []
    for family in _FAMILIES.values():
        out += [m for m in ipr.get_routes(family=family) if m.get("table") == MAIN_TABLE
                and m["type"] == 1]  # RTN_UNICAST: not local, broadcast or blackhole entries
    return out


def ours(ipr: Any) -> dict[model.Network, model.Address | None]:
    """The routes netkit made: destination -> gateway."""
    return {_dst(m): (ipaddress.ip_address(m.get("gateway")) if m.get("gateway") else None)
            for m in _main_routes(ipr) if m["proto"] == PROTOCOL}


def _on_link(ipr: Any, via: model.Address) -> bool:
    """True when the kernel reaches ``via`` directly (its route has no gateway of its own)."""
    try:
        got = ipr.route("get", dst=str(via))
    except NetlinkError:
        return False
    return bool(got) and not got[0].get("gateway") and got[0]["type"] == 1


def _refusal(want: Want, foreign: list[model.Network], ipr: Any) -> str | None:
    for net in foreign:
        if net.version == want.dst.version and net.prefixlen > 0 and net.overlaps(want.dst):
            return f"node {want.node}: podCIDR {want.dst} overlaps host route {net}, not routed"
    if not _on_link(ipr, want.via):
        return f"node {want.node}: InternalIP {want.via} is not on-link, no route to {want.dst}"
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
    foreign = [_dst(m) for m in _main_routes(ipr) if m["proto"] != PROTOCOL]
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
            ipr.route("replace", dst=str(want.dst), gateway=str(want.via), proto=PROTOCOL, table=MAIN_TABLE,
                      family=_FAMILIES[want.dst.version])
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
