"""What the firewall is asked to do, independent of the backend."""

from __future__ import annotations

import ipaddress
from typing import Any, NamedTuple

from netkit import errors
from netkit.net.names import attachment_hash, sha256

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

MASQ = "m"  # outbound masquerade of the container (bridge ipMasq)
DNAT = "d"  # published ports (portmap)
KINDS = (MASQ, DNAT)
PROTOCOLS = ("tcp", "udp", "sctp")


class PortMapping(NamedTuple):
    """One published port, as in runtimeConfig.portMappings."""

    host_port: int
    container_port: int
    protocol: str = "tcp"
    # "" = every address of the host, both families; 0.0.0.0 / "::" = every address of ONE family
    # (Docker's and CNI portmap's -p 0.0.0.0:P:C is IPv4 only).
    host_ip: str = ""

    def label(self) -> str:
        """A stable text form, used as the rule comment and in conflict messages."""
        return f"{self.protocol}/{self.host_ip or '*'}/{self.host_port}"

    @property
    def versions(self) -> tuple[int, ...]:
        """The IP versions the mapping is published on."""
        return (4, 6) if not self.host_ip else (ipaddress.ip_address(self.host_ip).version,)

    @property
    def any_address(self) -> bool:
        """True when no destination address is matched (every address of its versions)."""
        return self.host_ip in ("", "0.0.0.0", "::")

    @property
    def loopback6(self) -> bool:
        """True when the mapping covers [::1] (served by the proxy, never NAT'd)."""
        return self.host_ip in ("", "::", "::1")

    def overlaps(self, other: "PortMapping") -> bool:
        """True when both would catch the same packets (same protocol and port, addresses intersecting)."""
        return (self.protocol == other.protocol and self.host_port == other.host_port
                and _addresses_meet(self.host_ip, other.host_ip))


def _addresses_meet(a: str, b: str) -> bool:
    """True when host addresses ``a`` and ``b`` ("" = any, 0.0.0.0 / :: = any of a family) intersect."""
    if not a or not b or a == b:
        return True
    if a in ("0.0.0.0", "::") or b in ("0.0.0.0", "::"):
        return ipaddress.ip_address(a).version == ipaddress.ip_address(b).version
    return False


def network_hash(network: str) -> str:
    """Six hex digits naming a network in chain names."""
    return sha256(network.encode()).hexdigest()[:6]


class RuleGroup(NamedTuple):
    """The rules of one attachment of one kind; applied and removed as a unit."""

    kind: str
    network: str
    container_id: str
    ifname: str
    addresses: list[Interface]  # the container's addresses, with their subnet prefix
    mappings: list[PortMapping] = []  # noqa: RUF012 - never mutated
    snat: bool = True  # masquerade hairpin and localhost-originated DNAT traffic
    masq_all: bool = False  # masquerade every DNAT'd connection

    @property
    def chain(self) -> str:
        """The group's chain name: kind, network hash, attachment hash (28 bytes max for iptables)."""
        return group_chain(self.kind, self.network, self.container_id, self.ifname)


class NetworkRules(NamedTuple):
    """Rules of a whole network (its bridge), shared by all its attachments."""

    network: str
    bridge: str
    isolate: bool = True  # no forwarding from this bridge to another netkit bridge (Docker's isolation)
    icc: bool = True  # containers on the bridge may talk to each other (Docker's enable_icc)
    subnets: list[str] = []  # noqa: RUF012 - the network's subnets (icc=false is matched on them)
    internal: bool = False  # nothing from the bridge is forwarded to any other interface (Docker's --internal)
    chain_name: str = ""  # the chain, when read back from rules (the network's name is not in them)

    @property
    def chain(self) -> str:
        """The network's chain name."""
        return self.chain_name or f"NK-N-{network_hash(self.network)}"


def group_chain(kind: str, network: str, container_id: str, ifname: str) -> str:
    """Chain name of a group, derivable from the request alone (DEL and GC need nothing else)."""
    return f"NK-{kind.upper()}-{network_hash(network)}-{attachment_hash(network, container_id, ifname)}"


def network_prefix(kind: str, network: str) -> str:
    """The part of the chain names shared by every group of ``kind`` on ``network``."""
    return f"NK-{kind.upper()}-{network_hash(network)}-"


def _member(item: dict[str, Any], key: str) -> Any:
    """``item[key]``, or else the value of a key equal to it but for case, as Go's encoding/json (and
    so the reference portmap plugin) matches: containerd 1.6's go-cni sends ``HostPort``,
    ``ContainerPort``, ``Protocol``, ``HostIP`` (its struct has no JSON tags)."""
    if key in item:
        return item[key]
    folded = key.lower()
    return next((value for name, value in item.items() if name.lower() == folded), None)


def parse_port_mappings(raw: object) -> list[PortMapping]:
    """Validate runtimeConfig.portMappings (``[{hostPort, containerPort, protocol, hostIP}]``; keys
    matched regardless of case, see _member)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise errors.CNIError(errors.INVALID_CONFIG, "portMappings must be a list", repr(raw)[:200])
    out: list[PortMapping] = []
    for item in raw:
        if not isinstance(item, dict):
            raise errors.CNIError(errors.INVALID_CONFIG, "invalid port mapping", repr(item)[:200])
        ports = []
        for key in ("hostPort", "containerPort"):
            value = _member(item, key)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
                raise errors.CNIError(errors.INVALID_CONFIG, f"invalid {key} in port mapping", repr(item)[:200])
            ports.append(value)
        protocol = str(_member(item, "protocol") or "tcp").lower()
        if protocol not in PROTOCOLS:
            raise errors.CNIError(errors.INVALID_CONFIG, "invalid protocol in port mapping", repr(item)[:200])
        host_ip = _member(item, "hostIP") or ""
        if host_ip:
            try:
                parsed = ipaddress.ip_address(str(host_ip))
            except ValueError:
                raise errors.CNIError(errors.INVALID_CONFIG, "invalid hostIP in port mapping", repr(item)[:200]) from None
            host_ip = str(parsed)
        mapping = PortMapping(ports[0], ports[1], protocol, host_ip)
        for earlier in out:
            if mapping.overlaps(earlier):
                raise errors.CNIError(errors.PORT_ALLOCATED, f"port {mapping.label()} is mapped twice")
        out.append(mapping)
    return out
