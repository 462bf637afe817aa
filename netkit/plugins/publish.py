"""Publishing ports (DNAT) and masquerading for an attachment: shared by netkit-portmap and netkit-bridge.

netkit-bridge publishes ports itself when its config declares the ``portMappings`` capability,
so a one-plugin conflist does everything in one exec; netkit-portmap does the same after any bridge.
This module turns a CNI request and result into rule groups; the firewall layer below it knows
nothing of CNI.  Not a plugin itself (``netkit.plugins.REGISTRY`` does not list it).
"""

from __future__ import annotations

import ipaddress
import os

from netkit import errors
from netkit.cni.request import Request, flag
from netkit.cni.result import Result
from netkit.firewall import groups
from netkit.firewall.backend import Backend, choose
from netkit.firewall.model import DNAT, MASQ, Interface, RuleGroup, group_chain, parse_port_mappings
from netkit.net import sysctl
from netkit.plugins import proxy6


def backend(req: Request) -> Backend:
    """The firewall backend for this request."""
    return choose(req.config, req.env)


def warm_up() -> None:
    """For a long-lived process (the agent): the firewall backend this host uses, which a request
    chooses, and so imports, only when it publishes (bridge's and portmap's ``warm_up``)."""
    choose({}, os.environ)


def container_addresses(result: Result) -> list[Interface]:
    """The container's addresses in a result (those on a sandbox interface, or all if none says)."""
    interfaces = result.get("interfaces", [])
    out = []
    for ip in result.get("ips", []):
        index = ip.get("interface")
        if isinstance(index, int) and 0 <= index < len(interfaces) and not interfaces[index].get("sandbox"):
            continue
        out.append(ipaddress.ip_interface(ip["address"]))
    return out


def host_bridge(result: Result) -> str | None:
    """The host-side interface carrying the container's traffic: the first one outside the sandbox."""
    return next((i["name"] for i in result.get("interfaces", []) if not i.get("sandbox") and i.get("name")), None)


def host_veth(result: Result) -> str | None:
    """The host side of the container's veth: the outside interface after the bridge, if any."""
    outside = [i["name"] for i in result.get("interfaces", []) if not i.get("sandbox") and i.get("name")]
    return outside[1] if len(outside) > 1 else None


def dnat_group(req: Request, addresses: list[Interface]) -> RuleGroup:
    """The DNAT group asked for by runtimeConfig.portMappings and the snat/masqAll keys."""
    mark = req.config.get("markMasqBit")
    if mark is not None and (not isinstance(mark, int) or isinstance(mark, bool) or not 0 <= mark <= 31):
        raise errors.CNIError(errors.INVALID_CONFIG, "'markMasqBit' must be an integer in 0..31", repr(mark))
    return RuleGroup(DNAT, req.network, req.container_id, req.ifname, addresses,
                     parse_port_mappings(req.runtime_config.get("portMappings")),
                     snat=flag(req.config, "snat", True), masq_all=flag(req.config, "masqAll", False))


def masq_group(req: Request, addresses: list[Interface]) -> RuleGroup:
    """The outbound masquerade group of an ipMasq attachment."""
    return RuleGroup(MASQ, req.network, req.container_id, req.ifname, addresses)


def publish(fw: Backend, group: RuleGroup, bridge: str | None, veth: str | None = None) -> None:
    """Install the DNAT group; let 127.0.0.1 reach it through the bridge; restart stale UDP flows;
    serve [::1] through a proxy (``proxy6``: NAT cannot) that ends when ``veth`` (the host side of
    the container's link) goes."""
    if not group.mappings:
        return
    refuse_other_family(group)
    if group.snat and bridge and any(a.version == 4 for a in group.addresses):
        # Packets from 127.0.0.1 may then be routed out of the bridge (then masqueraded), as the
        # reference portmap does; only on this bridge, never on 'all'.
        sysctl.ensure(f"net/ipv4/conf/{bridge}/route_localnet", "1")
    groups.apply(fw, group)
    flush_udp(group)
    proxy6.start(group, veth)


def refuse_other_family(group: RuleGroup) -> None:
    """Fail for a mapping on a host address of a family the attachment has no address of (``[::1]``
    on an IPv4-only network): it would publish nothing, silently."""
    have = {a.version for a in group.addresses}
    for m in group.mappings:
        missing = [v for v in m.versions if v not in have]
        if m.host_ip and missing:
            raise errors.CNIError(errors.INVALID_CONFIG, f"cannot publish {m.label()}: the attachment has no "
                                  f"IPv{missing[0]} address", "use a host address of the network's family, "
                                  "or a network with an IPv6 subnet")


def flush_udp(group: RuleGroup) -> None:
    """Drop conntrack entries of the group's UDP host ports."""
    ports = {m.host_port for m in group.mappings if m.protocol == "udp"}
    if ports:
        from netkit.net.conntrack import flush_udp as flush

        flush(ports)


def unpublish(fw: Backend, req: Request, also: tuple[str, ...] = ()) -> None:
    """Remove the attachment's DNAT group (and groups of kinds ``also``, in the same change) and
    the UDP flows through it; nothing there is fine."""
    proxy6.stop(group_chain(DNAT, req.network, req.container_id, req.ifname))
    groups.remove(fw, (DNAT, *also), req.network, req.container_id, req.ifname)
    try:
        mappings = parse_port_mappings(req.runtime_config.get("portMappings"))
    except errors.CNIError:
        # DEL must succeed: the rules went by the attachment's name; mappings it cannot read (an ADD
        # that never published them, e.g. without the capability) have no flows to restart.
        return
    flush_udp(RuleGroup(DNAT, req.network, req.container_id, req.ifname, [], mappings))


def gc(fw: Backend, req: Request) -> None:
    """Remove the rules and [::1] proxies of this network's attachments not in the valid list."""
    groups.gc(fw, req.network, req.valid_attachments)
    proxy6.gc(req.network, req.valid_attachments)
