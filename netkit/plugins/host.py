"""netkit-host: Docker's ``--network host`` — the container shares the host's network namespace.

Nothing is created or changed.  ADD refuses any CNI_NETNS other than the plugin's own (the host's)
namespace, then reports what the container will see: the host's interfaces, their global addresses
and its default routes.  DEL never removes anything.

``report`` is shared with netkit-container, which describes another container's namespace the same way.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any

from netkit import errors
from netkit.cni.request import Request
from netkit.cni.result import Result
from netkit.net import netns
from netkit.net.netlink import IPRoute

_RT_SCOPE_UNIVERSE = 0
_RTN_UNICAST = 1
_MAIN_TABLE = 254


def _default_routes(ipr: Any) -> list[dict[str, Any]]:
    """The main table's unicast default routes, one entry per gateway (multipath expanded)."""
    out: list[dict[str, Any]] = []
    for family, dst in ((2, "0.0.0.0/0"), (10, "::/0")):
        for msg in ipr.get_routes(family=family, table=_MAIN_TABLE):
            if msg["dst_len"] != 0 or msg["type"] != _RTN_UNICAST:
                continue
            hops = msg.get_attr("RTA_MULTIPATH")
            gateways = [hop.get_attr("RTA_GATEWAY") for hop in hops] if hops else [msg.get_attr("RTA_GATEWAY")]
            for gw in gateways:
                route: dict[str, Any] = {"dst": dst}
                if gw:
                    route["gw"] = gw
                if msg.get_attr("RTA_PRIORITY"):
                    route["priority"] = msg.get_attr("RTA_PRIORITY")  # 1.1 field; dropped for older versions
                if route not in out:
                    out.append(route)
    return out


def report(ipr: Any, sandbox: str | None = None) -> Result:
    """Interfaces (by index), global addresses and default routes of ``ipr``'s namespace.

    ``sandbox`` goes on every interface when the namespace is a container's, never for the host's.
    An address gets ``gateway`` when a default route's gateway lies in its subnet.
    """
    interfaces: list[dict[str, str]] = []
    position: dict[int, int] = {}
    for link in sorted(ipr.get_links(), key=lambda link: link["index"]):
        entry = {"name": link.get_attr("IFLA_IFNAME")}
        mac = link.get_attr("IFLA_ADDRESS")
        if mac:
            entry["mac"] = mac
        if sandbox:
            entry["sandbox"] = sandbox
        position[link["index"]] = len(interfaces)
        interfaces.append(entry)
    routes = _default_routes(ipr)
    gateways = [ipaddress.ip_address(r["gw"].split("%")[0]) for r in routes if "gw" in r]
    ips: list[dict[str, Any]] = []
    for msg in ipr.get_addr():
        if msg["scope"] != _RT_SCOPE_UNIVERSE or msg["index"] not in position:
            continue
        # IFA_LOCAL is the own address on point-to-point links, where IFA_ADDRESS is the peer's.
        local = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
        iface = ipaddress.ip_interface(f"{local}/{msg['prefixlen']}")
        entry: dict[str, Any] = {"address": str(iface), "interface": position[msg["index"]]}
        gw = next((g for g in gateways if g.version == iface.version and g in iface.network and g != iface.ip), None)
        if gw is not None:
            entry["gateway"] = str(gw)
        ips.append(entry)
    result: Result = {"interfaces": interfaces, "ips": ips}
    if routes:
        result["routes"] = routes
    return result


def _require_host(path: str, code: int) -> None:
    """Raise CNIError ``code`` unless ``path`` is this process's (the host's) network namespace."""
    try:
        if netns.same_as_current(path):
            return
        why = "it is another network namespace"
    except FileNotFoundError:
        why = "it does not exist"
    except OSError as exc:
        why = f"it cannot be read: {os.strerror(exc.errno or 0)}"
    raise errors.CNIError(code, "CNI_NETNS is not the host's network namespace",
                          f"{path}: {why}; host mode needs the namespace the plugin runs in (e.g. /proc/1/ns/net)")


def add(req: Request) -> Result:
    """Check that CNI_NETNS is the host's namespace and report the host's network."""
    _require_host(req.netns, errors.INVALID_ENV)
    with IPRoute() as ipr:
        return report(ipr)


def delete(req: Request) -> None:
    """Nothing was made; nothing is removed."""


def check(req: Request) -> None:
    """Fail (106) unless CNI_NETNS is still the host's namespace."""
    _require_host(req.netns, errors.CHECK_FAILED)


def gc(req: Request) -> None:
    """Nothing to collect."""


def status(req: Request) -> None:
    """Always ready."""
