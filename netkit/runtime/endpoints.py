"""A container's endpoints: one interface per network (eth0, eth1, ...), attached and released through CNI.

Every endpoint is one CNI attachment of the network's conflist (container ID, ifname), so the
plugins' own state -- leases, veths, rule groups, the DNS records -- is per endpoint and DEL or GC of
one never touches another.  Only the primary endpoint (the one on the container's ``network``, eth0
at ``run``) installs a default route and carries the published ports: the others get their network's
conflist with the default routes taken out of its IPAM routes, as Docker gives a container one
default gateway whatever the number of networks.

``connect`` and ``disconnect`` change a container's networks while it runs (``netkit network
connect|disconnect``), under the root's lock like every change of a record.
"""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

from netkit import errors
from netkit.cni import chain
from netkit.net import links, netns
from netkit.rollback import Rollback
from netkit.runtime import dnsconf, networks, ports, sandbox, state
from netkit.runtime.root import Root
from netkit.runtime.state import Container, ContainerError, Endpoint

DEFAULT_ROUTES = ("0.0.0.0/0", "::/0")
SHORT_ID = 12  # Docker resolves a container's short ID on user networks too


def dns_aliases(ctr: Container, ep: Endpoint) -> list[str]:
    """The names besides the container's own that resolve to it on ``ep``'s network: its aliases and short ID.

    The default ``bridge`` has no name resolution (Docker's rule): no aliases there.
    """
    if ctr.net_kind != "bridge" or ep.network == networks.DEFAULT:
        return []
    return [*ep.aliases, ctr.id[:SHORT_ID]]


def attachment(ctr: Container, ep: Endpoint, path: str | None = None) -> chain.Attachment:
    """The CNI attachment of ``ep``; ``path`` is its CNI_NETNS when not the recorded namespace."""
    args = {"IgnoreUnknown": "1", "K8S_POD_NAME": ctr.name}
    if ep.ip:
        args["IP"] = ep.ip
    if ctr.mac_address and ep is ctr.primary:
        args["MAC"] = ctr.mac_address  # as podman passes it (CNI_ARGS); Docker's --mac-address is the first network's
    # podman's dnsname shape: {network name: [names]}, only for the network of this attachment.
    # The container's --dns servers: where netkit-dns forwards its other names (Docker's embedded DNS).
    caps: dict[str, Any] = {"portMappings": ctr.ports if ep is ctr.primary else [], "dns": {"servers": ctr.dns}}
    aliases = dns_aliases(ctr, ep)
    if aliases:
        caps["aliases"] = {ep.network: aliases}
    if path is None:
        path = ctr.netns or "/proc/self/ns/net"
    return chain.Attachment(ctr.id, path, ep.ifname, args, caps)


def without_default_route(conf: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``conf`` whose IPAM routes hold no default route (an endpoint that is not the primary)."""
    out = copy.deepcopy(conf)
    for plugin in out.get("plugins", []):
        ipam = plugin.get("ipam")
        if isinstance(ipam, dict) and isinstance(ipam.get("routes"), list):
            ipam["routes"] = [r for r in ipam["routes"]
                              if str(ipaddress.ip_network(r.get("dst", ""), strict=False)) not in DEFAULT_ROUTES]
        plugin.pop("isDefaultGateway", None)
    return out


def conflist(root: Root, ctr: Container, ep: Endpoint) -> dict[str, Any]:
    """The conflist ``ep`` is attached with (see the module's docstring)."""
    if ctr.net_kind == "container":
        return networks.mode_conflist("container", ctr.netns)
    conf = networks.load(root, ep.network if ctr.net_kind == "bridge" else ctr.net_kind)
    return conf if ep is ctr.primary or ctr.net_kind != "bridge" else without_default_route(conf)


def attach(root: Root, ctr: Container, ep: Endpoint, undo: Rollback, path: str | None = None) -> None:
    """ADD ``ep`` (already in ``ctr.endpoints``) and record the plugins' answer; its DEL goes on ``undo``."""
    conf = conflist(root, ctr, ep)
    att = attachment(ctr, ep, path)
    ep.cni_result = chain.add(conf, att, root.cni_path, root.cni_cache)
    undo.push(chain.delete, conf, att, root.cni_path, root.cni_cache)
    ep.addresses = [ip["address"] for ip in ep.cni_result.get("ips", [])
                    if not ip["address"].startswith(("127.", "::1"))]


def release(root: Root, ctr: Container, ep: Endpoint, path: str | None) -> None:
    """DEL ``ep``; ``path`` is CNI_NETNS ("" when the namespace is out of reach: DEL then frees what it finds)."""
    chain.delete(conflist(root, ctr, ep), attachment(ctr, ep, path), root.cni_path, root.cni_cache)


def next_ifname(ctr: Container) -> str:
    """The first ``ethN`` no endpoint of ``ctr`` uses."""
    used = {ep.ifname for ep in ctr.endpoints}
    n = 0
    while f"eth{n}" in used:
        n += 1
    return f"eth{n}"


def check_aliases(network: str, aliases: list[str]) -> None:
    """Refuse aliases on the default network (no name resolution there) and aliases that are no DNS label."""
    if aliases and network == networks.DEFAULT:
        raise ContainerError("network-scoped aliases are supported only for containers in user defined networks")
    for alias in aliases:
        if not alias or len(alias) > 253 or not all(c.isalnum() or c in "_.-" for c in alias):
            raise ContainerError(f"invalid network alias {alias!r}", "letters, digits, '_', '.', '-'")


def _is_mode(network: str) -> bool:
    return network in networks.MODES or network.startswith("container:")


def parse_spec(spec: str) -> Endpoint:
    """One ``--network`` value: a name (or mode), or Docker's long form ``name=NET[,alias=A...][,ip=ADDR]``."""
    if "=" not in spec or spec.startswith("container:"):
        return Endpoint(network=spec)
    fields: dict[str, list[str]] = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        if not sep or key not in ("name", "alias", "ip"):
            raise ContainerError(f"invalid network option {item!r} in {spec!r}", "known: name=, alias=, ip=")
        fields.setdefault(key, []).append(value)
    if len(fields.get("name", [])) != 1 or len(fields.get("ip", [])) > 1:
        raise ContainerError(f"invalid network {spec!r}: give name= once and ip= at most once")
    return Endpoint(network=fields["name"][0], ip=fields.get("ip", [""])[0], aliases=fields.get("alias", []))


def _check_ip(ep: Endpoint) -> None:
    if not ep.ip:
        return
    if _is_mode(ep.network) or ep.network == networks.DEFAULT:
        raise ContainerError("user specified IP address is supported on user defined networks only")
    try:
        ipaddress.ip_address(ep.ip)
    except ValueError:
        raise ContainerError(f"invalid IP address {ep.ip!r}") from None


def plan(specs: list[str], ip: str = "", aliases: list[str] | None = None) -> list[Endpoint]:
    """The endpoints ``run`` attaches, eth0 first: one per ``--network``; ``--ip`` and ``--network-alias``
    apply to the first network (Docker's rule); refuses what no root could attach."""
    eps = [parse_spec(s) for s in specs]
    first = eps[0]
    if ip and first.ip:
        raise ContainerError("conflicting options: --ip and the ip= of the first --network")
    first.ip = first.ip or ip
    first.aliases += aliases or []
    if len(eps) > 1 and any(_is_mode(ep.network) for ep in eps):
        raise ContainerError("conflicting options: cannot attach both user-defined and non-user-defined network-modes")
    names = [ep.network for ep in eps]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ContainerError(f"network given twice: {', '.join(twice)}")
    for i, ep in enumerate(eps):
        ep.ifname = f"eth{i}"
        if ep.aliases and _is_mode(ep.network):
            raise ContainerError("network-scoped aliases are supported only for containers in user defined networks")
        check_aliases(ep.network, ep.aliases)
        _check_ip(ep)
    return eps


def connect(root: Root, ref: str, network: str, ip: str = "", aliases: list[str] | None = None) -> Container:
    """Attach container ``ref`` to ``network`` as its next ethN (Docker's `network connect`)."""
    aliases = list(aliases or [])
    check_aliases(network, aliases)
    if _is_mode(network):
        raise ContainerError(f"container cannot be connected to network {network}: not a bridge network")
    _check_ip(Endpoint(network=network, ip=ip))
    with root.locked():
        ctr = state.find(root, ref)
        if ctr.net_kind != "bridge":
            raise ContainerError(f"container {ctr.name} cannot be connected to another network: "
                                 f"it uses network mode {ctr.network}")
        networks.load(root, network)  # an unknown network fails here
        if ctr.endpoint(network) is not None:
            raise ContainerError(f"endpoint with name {ctr.name} already exists in network {network}")
        path = sandbox.reachable(ctr)
        if not path:
            raise ContainerError(f"container {ctr.name} has no network namespace left to connect")
        ep = Endpoint(network=network, ifname=next_ifname(ctr), ip=ip, aliases=aliases)
        if ctr.primary is None:
            # Every network was left (disconnect): this one becomes the primary, with the default
            # routes its network gives and the published ports, as the first network at run has.
            ctr.network = network
        ctr.endpoints.append(ep)
        with Rollback() as undo:
            attach(root, ctr, ep, undo, path)
            state.save(root, ctr)
        dnsconf.refresh(root, ctr)  # its first resolver, if this is its first DNS network
    return ctr


def _default_routes(conf: dict[str, Any]) -> list[str]:
    """The default routes (0.0.0.0/0, ::/0) a network's IPAM gives its containers (none when internal)."""
    ipam = conf["plugins"][0].get("ipam", {})
    return [d for d in (str(ipaddress.ip_network(r.get("dst", ""), strict=False)) for r in ipam.get("routes", []))
            if d in DEFAULT_ROUTES]


def _promote(root: Root, ctr: Container, path: str) -> None:
    """The primary endpoint left: the oldest remaining one (already ``ctr.network``) takes the default
    routes its network gives (Docker moves the default gateway to another network likewise)."""
    new = ctr.primary
    if new is None:
        return  # no network left: the record keeps naming the one it had, the next connect replaces it
    wanted = _default_routes(networks.load(root, new.network))
    gateways = {ipaddress.ip_interface(ip["address"]).version: ip["gateway"]
                for ip in new.cni_result.get("ips", []) if ip.get("gateway")}
    routes = [(dst, gateways[ipaddress.ip_network(dst).version]) for dst in wanted
              if ipaddress.ip_network(dst).version in gateways]
    if not routes or not path:
        return
    failed: errors.CNIError | None = None
    with netns.entered(path), links.Socket() as nl:
        link = links.lookup(nl, new.ifname)
        if link is None:
            raise ContainerError(f"interface {new.ifname} of container {ctr.name} is gone")
        for dst, gw in routes:  # best effort: one family's failure does not keep the other's route out
            try:
                links.add_route(nl, link.index, dst, gw)
            except errors.CNIError as exc:
                failed = failed or exc
                continue
            new.cni_result.setdefault("routes", []).append({"dst": dst, "gw": gw})
    if failed is not None:
        raise failed


def _refuse_ports(ctr: Container, network: str) -> None:
    """Refuse to disconnect the primary network of a container that publishes ports.

    Decided: refused, not moved.  Moving the mappings means a DEL and an ADD of the next endpoint
    (the plugins take port mappings at ADD only), which would change its address under the container's
    open connections and could not be undone cleanly if the ADD failed; silently dropping them (what
    this did before) leaves a container that looks published and is not.  The user can re-run the
    container with the networks in the order wanted.
    """
    if ctr.ports:
        shown = ", ".join(ports.describe(m) for m in ctr.ports)
        raise ContainerError(f"cannot disconnect container {ctr.name} from network {network}: "
                             f"its published ports ({shown}) are on that network")


def disconnect(root: Root, ref: str, network: str) -> Container:
    """Detach container ``ref`` from ``network`` (Docker's `network disconnect`)."""
    with root.locked():
        ctr = state.find(root, ref)
        ep = ctr.endpoint(network) if ctr.net_kind == "bridge" else None
        if ep is None:
            raise ContainerError(f"container {ctr.name} is not connected to network {network}")
        was_primary = ep is ctr.primary
        if was_primary:
            _refuse_ports(ctr, network)
        path = sandbox.reachable(ctr)
        release(root, ctr, ep, path)
        ctr.endpoints.remove(ep)
        if was_primary and ctr.endpoints:
            ctr.network = ctr.endpoints[0].network  # the record never names a network it left for another
        try:
            # Saved first: the endpoint is gone whatever happens to the routes of the next one.
            state.save(root, ctr)
            if was_primary:
                try:
                    _promote(root, ctr, path)
                finally:
                    state.save(root, ctr)  # the routes that were added, even if one was not
        finally:
            dnsconf.refresh(root, ctr)  # the network's resolver is no longer reachable as that network's
    return ctr


def valid_attachments(records: list[Container], network: str) -> list[dict[str, str]]:
    """GC's list for ``network``: every endpoint the records hold there."""
    return [{"containerID": c.id, "ifname": ep.ifname} for c in records if c.net_kind == "bridge"
            for ep in c.endpoints if ep.network == network]
