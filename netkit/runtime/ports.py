"""Docker's ``-p/--publish`` forms, turned into CNI portMappings."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from netkit.runtime.state import ContainerError


def _range(text: str, what: str) -> list[int]:
    low, sep, high = text.partition("-")
    try:
        first, last = int(low), int(high) if sep else int(low)
    except ValueError:
        raise ContainerError(f"invalid {what} {text!r} in -p") from None
    if not 1 <= first <= last <= 65535:
        raise ContainerError(f"invalid {what} {text!r} in -p")
    return list(range(first, last + 1))


def parse(spec: str) -> list[dict[str, Any]]:
    """``[ip:][hostPort[-end]:]containerPort[-end][/proto]`` → mappings (hostPort 0 = choose one)."""
    rest, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise ContainerError(f"invalid protocol {proto!r} in -p {spec}")
    host_ip = ""
    if rest.startswith("["):  # [::1]:8080:80
        end = rest.find("]")
        host_ip, rest = rest[1:end], rest[end + 2:]
    elif rest.count(":") == 2:
        host_ip, rest = rest.split(":", 1)
    if host_ip:
        try:
            ipaddress.ip_address(host_ip)
        except ValueError:
            raise ContainerError(f"invalid host address {host_ip!r} in -p {spec}") from None
    host_part, sep, container_part = rest.rpartition(":")
    containers = _range(container_part, "container port")
    hosts = _range(host_part, "host port") if sep and host_part else [0] * len(containers)
    if len(hosts) != len(containers):
        raise ContainerError(f"host and container port ranges differ in length in -p {spec}")
    return [{"hostPort": h, "containerPort": c, "protocol": proto, "hostIP": host_ip}
            for h, c in zip(hosts, containers)]


def check_families(mappings: list[dict[str, Any]], subnets: list[str], network: str) -> None:
    """Refuse a host address of a family ``network`` (its ``subnets``) has no subnet of: ``-p [::1]:8080:80``
    on an IPv4-only network would publish nothing (the plugin refuses it too, later)."""
    have = {ipaddress.ip_network(s, strict=False).version for s in subnets}
    for m in mappings:
        if m["hostIP"] and ipaddress.ip_address(m["hostIP"]).version not in have:
            version = ipaddress.ip_address(m["hostIP"]).version
            raise ContainerError(f"cannot publish on {describe(m).split(' -> ')[1]}: network {network} has no "
                                 f"IPv{version} subnet", "create the network with --ipv6, or publish on an "
                                 f"IPv{({4, 6} - {version}).pop()} address")


def choose_free(mappings: list[dict[str, Any]], taken: set[tuple[str, int]]) -> list[dict[str, Any]]:
    """Give each ``hostPort: 0`` a free ephemeral port (the kernel's choice, as Docker's -p 80)."""
    out = []
    for m in mappings:
        if m["hostPort"] == 0:
            kind = socket.SOCK_DGRAM if m["protocol"] == "udp" else socket.SOCK_STREAM
            family = socket.AF_INET6 if ":" in m["hostIP"] else socket.AF_INET
            for _ in range(50):
                with socket.socket(family, kind) as s:
                    s.bind((m["hostIP"] or "0.0.0.0", 0))
                    port = s.getsockname()[1]
                if (m["protocol"], port) not in taken:
                    break
            m = dict(m, hostPort=port)
        taken.add((m["protocol"], m["hostPort"]))
        out.append(m)
    return out


def describe(m: dict[str, Any]) -> str:
    """Docker's ``80/tcp -> 0.0.0.0:8080`` (``[::1]:8080`` for an IPv6 host address)."""
    host = m.get("hostIP") or "0.0.0.0"
    return f"{m['containerPort']}/{m['protocol']} -> {f'[{host}]' if ':' in host else host}:{m['hostPort']}"
