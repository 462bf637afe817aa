"""netkit-bridge: a Linux bridge and one veth pair per attachment (drop-in for the reference ``bridge``).

ADD: ensure the bridge, enable forwarding, create the veth with its peer made directly in the
container's namespace, delegate IPAM by exec, configure the container side, return the result.
Every object is registered for rollback the moment it is made.  The host-side veth name is derived
from the attachment, so DEL and GC find it without the container's namespace.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import re
from dataclasses import dataclass
from typing import Any, Iterator

from netkit import errors, failpoints, paths
from netkit.cni import delegate
from netkit.cni.request import Request, flag, validate_ifname
from netkit.cni.result import Result
from netkit.firewall import groups
from netkit.firewall.model import MASQ, Interface, NetworkRules
from netkit.ipam import requester
from netkit.net import forwarding, links, names, netns, sysctl
from netkit.plugins import proxy6, publish
from netkit.rollback import Rollback

DEFAULT_BRIDGE = "cni0"
# Held shared by every ADD from creating its host veth until the veth carries its owner alias, and
# exclusively by GC while it collects unlabelled veths: what GC finds unlabelled under it is the
# debris of an ADD that died in that window, never one still running.
VETH_LOCK = f"{paths.RUN_DIR}/veth.lock"
_HOST_VETH = re.compile(rf"{names.HOST_VETH_PREFIX}[0-9a-f]{{12}}")


@contextlib.contextmanager
def _veth_window(exclusive: bool) -> Iterator[None]:
    try:
        os.makedirs(os.path.dirname(VETH_LOCK), mode=0o755, exist_ok=True)
        fd = os.open(VETH_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise errors.CNIError(errors.IO_FAILURE, f"failed to open lock {VETH_LOCK}", str(exc)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True)
class BridgeConfig:
    """The bridge plugin's keys, with the reference plugin's defaults."""

    bridge: str
    is_gateway: bool
    is_default_gateway: bool
    force_address: bool
    ip_masq: bool
    mtu: int | None
    hairpin: bool
    promisc: bool
    vlan: int | None
    ipam_type: str
    publishes_ports: bool  # declares the portMappings capability: does portmap's job itself
    isolate: bool  # drop forwarding to other netkit bridges (Docker's network isolation)
    icc: bool  # containers on this bridge may talk to each other (Docker's enable_icc)
    internal: bool  # forward nothing from the bridge to another interface (Docker's --internal)


def _int(conf: dict[str, Any], key: str, low: int, high: int) -> int | None:
    value = conf.get(key)
    if value is None or value == 0:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise errors.CNIError(errors.INVALID_CONFIG, f"{key!r} must be an integer in {low}..{high}", repr(value))
    return value


def parse_config(conf: dict[str, Any]) -> BridgeConfig:
    """Validate the plugin's own keys."""
    bridge = conf.get("bridge") or DEFAULT_BRIDGE
    if not isinstance(bridge, str):
        raise errors.CNIError(errors.INVALID_CONFIG, "'bridge' must be a string", repr(bridge))
    try:
        validate_ifname(bridge)
    except errors.CNIError as exc:
        raise errors.CNIError(errors.INVALID_CONFIG, "invalid bridge name", exc.details) from None
    ipam = conf.get("ipam")
    if not isinstance(ipam, dict) or not isinstance(ipam.get("type"), str):
        raise errors.CNIError(errors.INVALID_CONFIG, "bridge needs an 'ipam' object with a 'type'")
    default_gw = flag(conf, "isDefaultGateway")
    mtu = _int(conf, "mtu", 68, 65535)
    if mtu is not None and mtu < 1280 and _ipv6_subnets(ipam):
        raise errors.CNIError(errors.INVALID_CONFIG, f"mtu {mtu} is too small for IPv6 (at least 1280)",
                              f"the network has IPv6 subnet {_ipv6_subnets(ipam)[0]}")
    return BridgeConfig(
        bridge=bridge,
        is_gateway=flag(conf, "isGateway") or default_gw,
        is_default_gateway=default_gw,
        force_address=flag(conf, "forceAddress"),
        ip_masq=flag(conf, "ipMasq"),
        mtu=mtu,
        hairpin=flag(conf, "hairpinMode"),
        promisc=flag(conf, "promiscMode"),
        vlan=_int(conf, "vlan", 1, 4094),
        ipam_type=ipam["type"],
        publishes_ports=bool((conf.get("capabilities") or {}).get("portMappings")),
        isolate=flag(conf, "isolate", True),
        icc=flag(conf, "icc", True),
        internal=flag(conf, "internal"),
    )


def _ipv6_subnets(ipam: dict[str, Any]) -> list[str]:
    """The IPv6 subnets the IPAM config names (its ranges, or a single ``subnet``); unreadable
    entries are left to the IPAM plugin to refuse."""
    ranges = ipam.get("ranges") if isinstance(ipam.get("ranges"), list) else []
    subnets = [r.get("subnet") for rs in ranges if isinstance(rs, list) for r in rs if isinstance(r, dict)]
    subnets.append(ipam.get("subnet"))
    return [s for s in subnets if isinstance(s, str) and ":" in s]


def _requested_mac(req: Request) -> str | None:
    mac = req.args.get("MAC") or req.runtime_config.get("mac")
    if mac is None:
        return None
    text = str(mac).lower()
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p) for p in parts):
        raise errors.CNIError(errors.INVALID_CONFIG, "invalid MAC address", repr(mac))
    return text


def _gateways(ipam_result: Result) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    """Gateway addresses (with the subnet's prefix) that the bridge should carry."""
    out = []
    for ip in ipam_result.get("ips", []):
        if ip.get("gateway"):
            prefix = ipaddress.ip_interface(ip["address"]).network.prefixlen
            out.append(ipaddress.ip_interface(f"{ip['gateway']}/{prefix}"))
    return out


def _ensure_gateway(nl: links.Socket, bridge_index: int, gw: ipaddress.IPv4Interface | ipaddress.IPv6Interface,
                    force: bool) -> None:
    """Give the bridge its gateway address, refusing (or with forceAddress replacing) a conflicting one."""
    for existing in links.addresses(nl, bridge_index):
        if existing.version != gw.version or existing == gw:
            continue
        if existing.ip in gw.network or gw.ip in existing.network:
            if not force:
                raise errors.CNIError(errors.INVALID_CONFIG, f"bridge already has address {existing}",
                                      f"gateway is {gw}; set forceAddress to replace it")
            links.remove_address(nl, bridge_index, existing)
    # NODAD: the gateway answers neighbour solicitations (and containers' first packets) at once; the
    # subnet is the network's own, no other host on the bridge claims its gateway.
    links.add_address(nl, bridge_index, gw, nodad=True)


def _enable_ipv6(ifname: str, ipam_result: Result) -> None:
    """Switch IPv6 on for ``ifname`` (in the current namespace) when the result has an IPv6 address:
    a host with net.ipv6.conf.default.disable_ipv6=1 makes every new interface without it, and
    adding an IPv6 address there fails."""
    if any(":" in ip["address"] for ip in ipam_result.get("ips", [])):
        sysctl.ensure(f"net/ipv6/conf/{ifname}/disable_ipv6", "0")


def _container_routes(cfg: BridgeConfig, ipam_result: Result) -> list[dict[str, str]]:
    routes = [dict(r) for r in ipam_result.get("routes", [])]
    if cfg.is_default_gateway:
        for gw in _gateways(ipam_result):
            dst = "0.0.0.0/0" if gw.version == 4 else "::/0"
            if not any(r["dst"] == dst for r in routes):
                routes.append({"dst": dst, "gw": str(gw.ip)})
    return routes


def _configure_container(req: Request, ipam_result: Result, routes: list[dict[str, str]]) -> str:
    """Inside the container: addresses, link up, routes.  Returns the interface's MAC."""
    gateways = {ipaddress.ip_address(ip["gateway"]).version: ip["gateway"]
                for ip in ipam_result.get("ips", []) if ip.get("gateway")}
    with netns.entered(req.netns), links.Socket() as nl:
        link = links.lookup(nl, req.ifname)
        if link is None:
            raise errors.CNIError(errors.KERNEL, f"interface {req.ifname} missing in the container")
        _enable_ipv6(req.ifname, ipam_result)
        for ip in ipam_result.get("ips", []):
            # NODAD (Docker's choice too): IPAM made the address unique, and a tentative address
            # would leave the container without IPv6 for its first second.
            links.add_address(nl, link.index, ipaddress.ip_interface(ip["address"]), nodad=True)
        links.up(nl, link.index)
        for route in routes:
            version = ipaddress.ip_network(route["dst"], strict=False).version
            links.add_route(nl, link.index, route["dst"], route.get("gw") or gateways.get(version))
        return str(link.address)


def _firewall_add(req: Request, cfg: BridgeConfig, addresses: list[Interface], host: str, undo: Rollback) -> None:
    """Network isolation, masquerade (ipMasq), published ports (portMappings capability).

    The network's rules stay with the bridge; the attachment's are undone if ADD fails.
    """
    fw = publish.backend(req)
    subnets = sorted({str(a.network) for a in addresses})
    groups.apply_network(fw, NetworkRules(req.network, cfg.bridge, cfg.isolate, cfg.icc, subnets, cfg.internal))
    failpoints.hit("bridge.add.after-network-rules")
    if cfg.ip_masq:
        # Registered before applying: a batch that fails half-way must not leave its half.
        undo.push(groups.remove, fw, (MASQ,), req.network, req.container_id, req.ifname)
        groups.apply(fw, publish.masq_group(req, addresses))
        failpoints.hit("bridge.add.after-masq")
    if cfg.publishes_ports:
        undo.push(publish.unpublish, fw, req)
        publish.publish(fw, publish.dnat_group(req, addresses), cfg.bridge, host)
        failpoints.hit("bridge.add.after-dnat")


def _as_requester(req: Request) -> Request:
    """The request for the IPAM delegate, naming this process so an orphaned delegate reserves nothing."""
    return req._replace(env={**req.env, requester.ENV: requester.token()})


def add(req: Request) -> Result:
    """Attach the container to the bridge."""
    cfg = parse_config(req.config)
    mac = _requested_mac(req)
    netns.require_other(req.netns)
    host = names.host_veth(req.network, req.container_id, req.ifname)
    # The socket must outlive the undo stack: undo steps use it.
    with links.Socket() as nl, Rollback() as undo:
        bridge = links.ensure_bridge(nl, cfg.bridge, cfg.mtu, vlan_filtering=cfg.vlan is not None)
        if cfg.promisc:
            links.set_promisc(nl, bridge.index)
        failpoints.hit("bridge.add.after-bridge")
        # A link with this derived name can only be a leftover of this same attachment.
        links.delete(nl, host)
        with _veth_window(exclusive=False):
            links.create_veth(nl, host, req.ifname, req.netns, cfg.mtu, mac)
            undo.push(links.delete, nl, host)
            failpoints.hit("bridge.add.after-veth")
            alias = names.owner_alias(req.network, req.container_id, req.ifname)
            host_link = links.attach(nl, host, bridge.index, cfg.hairpin, cfg.vlan, alias)
        failpoints.hit("bridge.add.after-attach")

        # Registered before the call: a delegate that dies after writing its lease (killed, timed
        # out) still had its lease released by the rollback.
        undo.push(delegate.call, "DEL", cfg.ipam_type, req)
        ipam_result = delegate.call("ADD", cfg.ipam_type, _as_requester(req))
        assert ipam_result is not None
        failpoints.hit("bridge.add.after-ipam")
        if not ipam_result.get("ips"):
            raise errors.CNIError(errors.INVALID_CONFIG, "IPAM plugin returned no addresses")
        for version in sorted({ipaddress.ip_interface(ip["address"]).version for ip in ipam_result["ips"]}):
            forwarding.enable(version)
        if cfg.is_gateway:
            if any(gw.version == 6 for gw in _gateways(ipam_result)):
                _enable_ipv6(cfg.bridge, ipam_result)
            for gw in _gateways(ipam_result):
                _ensure_gateway(nl, bridge.index, gw, cfg.force_address)
            failpoints.hit("bridge.add.after-gateway")
        routes = _container_routes(cfg, ipam_result)
        container_mac = _configure_container(req, ipam_result, routes)
        failpoints.hit("bridge.add.after-container")
        _firewall_add(req, cfg, [ipaddress.ip_interface(ip["address"]) for ip in ipam_result["ips"]], host, undo)

    result: Result = {
        "interfaces": [
            {"name": cfg.bridge, "mac": bridge.address},
            {"name": host, "mac": host_link.address},
            {"name": req.ifname, "mac": container_mac, "sandbox": req.netns},
        ],
        "ips": [dict(ip, interface=2) for ip in ipam_result["ips"]],
        "routes": routes,
    }
    dns = ipam_result.get("dns") or req.config.get("dns")
    if dns:
        result["dns"] = dns
    return result


def delete(req: Request) -> None:
    """Detach: release the address, remove the veth.  Anything already gone is fine."""
    cfg = parse_config(req.config)
    delegate.call("DEL", cfg.ipam_type, req)
    failpoints.hit("bridge.del.after-ipam")
    # Always, whatever the config says now: the rules are found by name, and ipMasq may have
    # been switched off since ADD.
    publish.unpublish(publish.backend(req), req, also=(MASQ,))
    failpoints.hit("bridge.del.after-firewall")
    if req.netns and netns.exists(req.netns) and not netns.same_as_current(req.netns):
        with netns.entered(req.netns), links.Socket() as nl:
            links.delete(nl, req.ifname)
    failpoints.hit("bridge.del.after-container-veth")
    with links.Socket() as nl:
        links.delete(nl, names.host_veth(req.network, req.container_id, req.ifname))


def check(req: Request) -> None:
    """Fail when the attachment no longer matches prevResult."""
    cfg = parse_config(req.config)
    prev = req.prev_result
    if prev is None:
        raise errors.CNIError(errors.INVALID_CONFIG, "CHECK needs prevResult")
    delegate.call("CHECK", cfg.ipam_type, req)
    host = names.host_veth(req.network, req.container_id, req.ifname)
    with links.Socket() as nl:
        bridge = links.lookup(nl, cfg.bridge)
        host_link = links.lookup(nl, host)
        if bridge is None:
            raise errors.CNIError(errors.CHECK_FAILED, f"bridge {cfg.bridge} is missing")
        if host_link is None or host_link.master != bridge.index:
            raise errors.CNIError(errors.CHECK_FAILED, f"host veth {host} is missing or not on {cfg.bridge}")
    interfaces = prev.get("interfaces", [])
    mine = [i for i, iface in enumerate(interfaces) if iface.get("name") == req.ifname and iface.get("sandbox")]
    with netns.entered(req.netns), links.Socket() as nl:
        link = links.lookup(nl, req.ifname)
        if link is None:
            raise errors.CNIError(errors.CHECK_FAILED, f"interface {req.ifname} is missing in the container")
        if mine and interfaces[mine[0]].get("mac") not in (None, link.address):
            raise errors.CNIError(errors.CHECK_FAILED, f"interface {req.ifname} has another MAC address")
        have = links.addresses(nl, link.index)
        for ip in prev.get("ips", []):
            if mine and ip.get("interface") not in (None, mine[0]):
                continue
            if ipaddress.ip_interface(ip["address"]) not in have:
                raise errors.CNIError(errors.CHECK_FAILED, f"address {ip['address']} is missing on {req.ifname}")
        have_routes = {str(dst) for dst, _ in links.routes(nl, link.index)}
        for route in prev.get("routes", []):
            dst = str(ipaddress.ip_network(route["dst"], strict=False))
            if dst not in have_routes:
                raise errors.CNIError(errors.CHECK_FAILED, f"route {dst} is missing in the container")
    if cfg.ip_masq or cfg.publishes_ports:
        fw = publish.backend(req)
        addresses = publish.container_addresses(prev)
        if cfg.ip_masq:
            groups.check(fw, publish.masq_group(req, addresses))
        dnat = publish.dnat_group(req, addresses)
        if cfg.publishes_ports and dnat.mappings:
            groups.check(fw, dnat)
            proxy6.check(dnat)


def gc(req: Request) -> None:
    """Release leases and remove host veths of attachments not in the valid list."""
    cfg = parse_config(req.config)
    delegate.call("GC", cfg.ipam_type, req)
    failpoints.hit("bridge.gc.after-ipam")
    publish.gc(publish.backend(req), req)
    failpoints.hit("bridge.gc.after-firewall")
    keep = {names.host_veth(req.network, cid, ifname) for cid, ifname in req.valid_attachments}
    with links.Socket() as nl:
        _collect_unlabelled_veths(nl, keep)
        bridge = links.lookup(nl, cfg.bridge)
        if bridge is None:
            return
        for port in links.ports(nl, bridge.index):
            if names.alias_network(port.alias) == req.network and port.name not in keep:
                links.delete(nl, port.name)


def _collect_unlabelled_veths(nl: links.Socket, keep: set[str]) -> None:
    """Remove host veths an ADD made and then died before labelling (killed between two netlink calls).

    Unlabelled, nothing says which network they were for; but no live ADD is in that window while
    the lock is held exclusively, so they belong to no one.
    """
    with _veth_window(exclusive=True):
        for link in links.all_links(nl):
            if _HOST_VETH.fullmatch(link.name) and link.name not in keep and not link.alias and link.kind == "veth":
                links.delete(nl, link.name)


def status(req: Request) -> None:
    """Ready when IPAM is ready and rtnetlink answers."""
    cfg = parse_config(req.config)
    delegate.call("STATUS", cfg.ipam_type, req)
    try:
        with links.Socket() as nl:
            links.lookup(nl, "lo")
    except Exception as exc:  # noqa: BLE001 - any failure here means "cannot work"
        raise errors.CNIError(errors.NOT_AVAILABLE, "rtnetlink unavailable", str(exc)) from None


warm_up = publish.warm_up
