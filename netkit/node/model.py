"""The facts ``netkit node`` acts on: nodes with their InternalIP and pod subnets.

Both sources (a nodes file, the Kubernetes API) produce the same typed values, so everything
downstream (conflist, routes) never sees a dict.  A malformed node is refused with ``NodeError``
naming the node, so one bad entry can be logged in one line and skipped.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class NodeError(ValueError):
    """One node's facts are unusable (the message names the node and why)."""


@dataclass(frozen=True)
class Node:
    """One cluster node: its name, InternalIP addresses and pod subnets (podCIDRs, at most one per
    family, as Kubernetes allows)."""

    name: str
    internal_ips: tuple[Address, ...]
    pod_cidrs: tuple[Network, ...]

    def internal_ip(self, version: int) -> Address | None:
        """The node's InternalIP of IP ``version`` (4 or 6), or None."""
        return next((a for a in self.internal_ips if a.version == version), None)


def _network(name: str, text: Any) -> Network:
    if not isinstance(text, str):
        raise NodeError(f"node {name}: podCIDR {text!r} is not a string")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise NodeError(f"node {name}: podCIDR {text}: {exc}") from None


def _address(name: str, text: Any) -> Address:
    if not isinstance(text, str):
        raise NodeError(f"node {name}: InternalIP {text!r} is not a string")
    try:
        return ipaddress.ip_address(text)
    except ValueError as exc:
        raise NodeError(f"node {name}: InternalIP {text}: {exc}") from None


def make(name: Any, internal_ips: list[Any], pod_cidrs: list[Any]) -> Node:
    """A checked ``Node``: a name, parsable addresses, at most one pod subnet per family.

    A node without a pod subnet is valid (the controller manager may not have allocated one yet);
    what uses it decides what that means.
    """
    if not isinstance(name, str) or not name:
        raise NodeError(f"a node without a name: {name!r}")
    cidrs = tuple(_network(name, c) for c in pod_cidrs)
    if len({c.version for c in cidrs}) != len(cidrs):
        raise NodeError(f"node {name}: more than one podCIDR of one family: {', '.join(map(str, cidrs))}")
    ips = tuple(_address(name, a) for a in internal_ips)
    return Node(name, ips, cidrs)


def from_simple(entry: Any) -> Node:
    """A node from a nodes file's short form: ``{name, internalIP(s), podCIDR(s)}``."""
    if not isinstance(entry, dict):
        raise NodeError(f"a node entry is not a mapping: {entry!r}")
    return make(entry.get("name"), _listed(entry, "internalIP", "internalIPs"),
                _listed(entry, "podCIDR", "podCIDRs"))


def _listed(entry: dict[str, Any], one: str, many: str) -> list[Any]:
    got = entry.get(many)
    if got is None:
        return [] if entry.get(one) in (None, "") else [entry[one]]
    if not isinstance(got, list):
        raise NodeError(f"node {entry.get('name')}: {many} is not a list")
    return got


def _part(name: str, what: str, value: Any) -> dict[str, Any]:
    # An absent part is empty (a new Node has no status yet); any other shape is this node's fault.
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise NodeError(f"node {name}: {what} is not a mapping: {value!r:.80}")
    return value


def from_kubernetes(obj: Any) -> Node:
    """A node from a Kubernetes Node object as JSON (``metadata.name``, ``spec.podCIDRs`` or the
    older ``spec.podCIDR``, ``status.addresses`` of type InternalIP); NodeError naming the node for
    any other shape (an API or a file may hand anything)."""
    if not isinstance(obj, dict):
        raise NodeError(f"a Node object is not a mapping: {obj!r:.80}")
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise NodeError(f"a Node object whose metadata is not a mapping: {meta!r:.80}")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise NodeError(f"a node without a name: {name!r:.80}")
    spec = _part(name, "spec", obj.get("spec"))
    cidrs = spec.get("podCIDRs")
    if not cidrs:
        cidrs = [spec["podCIDR"]] if spec.get("podCIDR") else []
    elif not isinstance(cidrs, list):
        raise NodeError(f"node {name}: spec.podCIDRs is not a list: {cidrs!r:.80}")
    addresses = _part(name, "status", obj.get("status")).get("addresses") or []
    if not isinstance(addresses, list):
        raise NodeError(f"node {name}: status.addresses is not a list: {addresses!r:.80}")
    if not all(isinstance(a, dict) for a in addresses):
        raise NodeError(f"node {name}: status.addresses holds an entry that is not a mapping")
    return make(name, [a.get("address") for a in addresses if a.get("type") == "InternalIP"], cidrs)


def from_entry(entry: Any) -> Node:
    """A node from either form: a Kubernetes Node object (it has ``metadata``) or the short form."""
    if isinstance(entry, dict) and "metadata" in entry:
        return from_kubernetes(entry)
    return from_simple(entry)
