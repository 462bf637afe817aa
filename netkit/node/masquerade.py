"""Masquerade of pod traffic leaving the cluster: one MASQ rule group of the firewall layer per node.

The group's jump matches the node's pod subnets as sources (``RuleGroup.sources``); its chain lets
traffic to the cluster CIDR (the address's network) and multicast pass unchanged and masquerades the
rest, so pod-to-pod traffic across nodes keeps its pod source address and only traffic leaving the
cluster takes the node's.  Either firewall backend (nftables, iptables) serves it, as for a
container's ``ipMasq``.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from netkit import errors
from netkit.firewall import groups
from netkit.firewall.backend import Backend
from netkit.firewall.model import MASQ, RuleGroup
from netkit.node import model

# The rule group's identity (kind, network, container id, ifname): one per node name.
NETWORK = "netkit-node"
IFNAME = "pods"


def rule_group(node: str, pod_cidrs: tuple[model.Network, ...],
               cluster_cidrs: tuple[model.Network, ...]) -> tuple[RuleGroup | None, list[str]]:
    """The node's masquerade group (None when no pod subnet can have one) and a line for each pod
    subnet that is outside every cluster CIDR of its family (it is not masqueraded: which traffic
    leaves the cluster is unknown for it)."""
    addresses: list[Any] = []
    sources: list[str] = []
    refused: list[str] = []
    for pod in pod_cidrs:
        cluster = next((c for c in cluster_cidrs if c.version == pod.version and pod.subnet_of(c)), None)  # type: ignore[arg-type]
        if cluster is None:
            refused.append(f"node {node}: podCIDR {pod} is in no --cluster-cidr, not masqueraded")
            continue
        # The gateway's address with the cluster's prefix: its network is what stays unmasqueraded.
        addresses.append(ipaddress.ip_interface(f"{pod.network_address + 1}/{cluster.prefixlen}"))
        sources.append(str(pod))
    if not sources:
        return None, refused
    return RuleGroup(MASQ, NETWORK, node, IFNAME, addresses, sources=sources), refused


def apply(backend: Backend, group: RuleGroup) -> None:
    """Install (or replace) the group."""
    groups.apply(backend, group)


def in_place(backend: Backend, group: RuleGroup) -> bool:
    """True when every rule of the group is there as applied (the check a plugin's CHECK does)."""
    try:
        groups.check(backend, group)
    except errors.CNIError:
        return False
    return True


def remove(backend: Backend, node: str) -> None:
    """Remove the node's masquerade group; none there is fine."""
    groups.remove(backend, (MASQ,), NETWORK, node, IFNAME)
