"""What ``netkit inspect`` and ``netkit network inspect`` show, in Docker's shape where Docker has one.

``NetworkSettings.Networks.<name>`` holds one entry per endpoint with Docker's keys (IPAddress,
IPPrefixLen, Gateway, GlobalIPv6Address, GlobalIPv6PrefixLen, IPv6Gateway, MacAddress, Aliases),
read from the plugins' CNI result of that endpoint; ``NetworkSettings.IPAddress`` and its siblings
are the primary endpoint's (the one of the default route), as scripts written for ``docker
inspect`` read them.  netkit's earlier keys (``Network``, ``Addresses``, the ``Ports`` list) stay.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from netkit.runtime import endpoints, ports, sandbox, state
from netkit.runtime.root import Root
from netkit.runtime.state import Container, Endpoint

_EMPTY = {"IPAddress": "", "IPPrefixLen": 0, "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
          "IPv6Gateway": "", "MacAddress": ""}


def _interface_index(ep: Endpoint) -> int | None:
    """The index of ``ep``'s container interface in its CNI result's ``interfaces``."""
    for i, iface in enumerate(ep.cni_result.get("interfaces", [])):
        if iface.get("sandbox") and iface.get("name") == ep.ifname:
            return i
    return None


def addressing(ep: Endpoint) -> dict[str, Any]:
    """Docker's address keys of one endpoint: its first IPv4 and first global IPv6 address, gateways, MAC."""
    out = dict(_EMPTY)
    index = _interface_index(ep)
    if index is not None:
        out["MacAddress"] = ep.cni_result["interfaces"][index].get("mac", "")
    for ip in ep.cni_result.get("ips", []):
        if index is not None and ip.get("interface") not in (None, index):
            continue
        iface = ipaddress.ip_interface(ip["address"])
        if iface.is_loopback or iface.is_link_local:
            continue
        v4 = iface.version == 4
        if out["IPAddress" if v4 else "GlobalIPv6Address"]:
            continue  # the first of each family, as Docker shows one
        out["IPAddress" if v4 else "GlobalIPv6Address"] = str(iface.ip)
        out["IPPrefixLen" if v4 else "GlobalIPv6PrefixLen"] = iface.network.prefixlen
        out["Gateway" if v4 else "IPv6Gateway"] = ip.get("gateway", "")
    return out


def _network_entry(ctr: Container, ep: Endpoint) -> dict[str, Any]:
    aliases = endpoints.dns_aliases(ctr, ep)
    ipam = {"IPv4Address": ep.ip} if ep.ip and ipaddress.ip_address(ep.ip).version == 4 else \
        {"IPv6Address": ep.ip} if ep.ip else None
    # Docker before 26 lists the aliases with the short ID; 26 on adds DNSNames, the name first.
    return {"IPAMConfig": ipam, "Aliases": aliases or None, "DNSNames": [ctr.name, *aliases] if aliases else None,
            "InterfaceName": ep.ifname, **addressing(ep)}


def container(ctr: Container) -> dict[str, Any]:
    """One container as ``inspect`` shows it."""
    running = state.alive(ctr)
    primary = ctr.primary
    # A container joined to another's namespace has no network of its own (Docker shows none either).
    nets = {} if ctr.net_kind == "container" else {ep.network: _network_entry(ctr, ep) for ep in ctr.endpoints}
    return {
        "Id": ctr.id, "Name": ctr.name, "Command": ctr.command,
        "State": {"Status": ctr.state, "Running": running, "Pid": ctr.pid if running else 0,
                  "ExitCode": ctr.exit_code or 0, "Error": ctr.error or ""},  # Docker: 0 until it exits
        "NetworkMode": ctr.network,
        "NetworkSettings": {
            "Network": ctr.network, "SandboxKey": sandbox.reachable(ctr) if ctr.net_kind != "host" else "",
            "Addresses": ctr.addresses, "Ports": [ports.describe(m) for m in ctr.ports],
            **(addressing(primary) if primary is not None and ctr.net_kind == "bridge" else _EMPTY),
            "Networks": nets,
        },
        "Hostname": ctr.hostname, "Created": ctr.created, "LogPath": ctr.log,
        "Config": {"Labels": ctr.labels},
    }


def network_containers(root: Root, network: str) -> dict[str, dict[str, Any]]:
    """Docker's ``Containers`` of ``network inspect``: container ID -> name, interface and addresses."""
    out = {}
    for ctr in state.all_records(root):
        ep = ctr.endpoint(network) if ctr.net_kind != "container" else None  # a joiner has no endpoint
        if ep is None:
            continue
        a = addressing(ep)
        out[ctr.id] = {
            "Name": ctr.name, "InterfaceName": ep.ifname, "MacAddress": a["MacAddress"],
            "IPv4Address": f"{a['IPAddress']}/{a['IPPrefixLen']}" if a["IPAddress"] else "",
            "IPv6Address": f"{a['GlobalIPv6Address']}/{a['GlobalIPv6PrefixLen']}" if a["GlobalIPv6Address"] else "",
            "Aliases": endpoints.dns_aliases(ctr, ep),
        }
    return out
