"""netkit-dns: names of a network's containers, resolved by a daemon on its gateway (podman dnsname's keys).

Chained after the bridge: reads the container's addresses and the gateways from prevResult, names
it by ``K8S_POD_NAME`` from CNI_ARGS and the aliases of ``runtimeConfig.aliases[<network>]``
(capability ``aliases``; capability ``dns``: the container's own servers for other names), writes
the network's records file and has the resolver daemon of the records directory serve it (started
here when none runs).  Config keys: ``domainName`` (default
"dns.netkit"), and netkit's own ``dataDir`` (records directory, default /run/netkit/dns) and
``upstreams`` (where other names go; default: the host's resolv.conf).  The result is prevResult
with the gateways as nameservers and the domain as search, which podman writes to the container's
resolv.conf.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from netkit import errors
from netkit.cni.request import Request
from netkit.cni.result import Result
from netkit.dns import control, records, upstreams
from netkit.plugins import chained
from netkit.rollback import Rollback


class _Config:
    """The plugin's keys, validated."""

    def __init__(self, req: Request) -> None:
        conf = req.config
        self.domain = records.valid_domain(conf.get("domainName", records.DEFAULT_DOMAIN))
        self.data_dir = conf.get("dataDir") or records.DEFAULT_DIR
        if not isinstance(self.data_dir, str) or not self.data_dir.startswith("/"):
            raise errors.CNIError(errors.INVALID_CONFIG, "'dataDir' must be an absolute path")
        ups = conf.get("upstreams")
        self.upstreams = upstreams.host_upstreams() if ups is None else _servers(ups, "'upstreams'")


def _servers(value: Any, key: str) -> list[str]:
    """A list of upstream servers ("ADDR", "ADDR:PORT", "[ADDR]:PORT"), checked; code 7 otherwise."""
    if not isinstance(value, list) or not all(isinstance(u, str) for u in value):
        raise errors.CNIError(errors.INVALID_CONFIG, f"{key} must be a list of strings")
    try:
        for spec in value:
            upstreams.parse(spec)
    except ValueError as exc:
        raise errors.CNIError(errors.INVALID_CONFIG, f"invalid server in {key}", str(exc)) from None
    return list(value)


def _own_servers(req: Request) -> list[str]:
    """The container's own DNS servers, capability ``dns`` (``runtimeConfig.dns.servers``: Docker's --dns):
    on a network with names the resolver stays its nameserver and forwards other names to them."""
    dns = req.runtime_config.get("dns", {})
    if not isinstance(dns, dict):
        raise errors.CNIError(errors.INVALID_CONFIG, "runtimeConfig 'dns' must be an object")
    return _servers(dns.get("servers", []), "runtimeConfig 'dns.servers'")


def _names(req: Request) -> list[str]:
    """The attachment's names: the container's (K8S_POD_NAME), then its aliases on this network.

    A container name no DNS name can spell ("a.-b", a label past 63 bytes: the runtime's rules are
    looser) is left out rather than failing the container's start; an alias asked for is refused.
    """
    out: list[str] = []
    pod = req.args.get("K8S_POD_NAME", "")
    if pod:
        try:
            out.append(records.valid_name(pod))
        except errors.CNIError:
            pass
    aliases = req.runtime_config.get("aliases", {})
    if not isinstance(aliases, dict):
        raise errors.CNIError(errors.INVALID_CONFIG, "runtimeConfig 'aliases' must be an object of name lists")
    mine = aliases.get(req.network, [])
    if not isinstance(mine, list) or not all(isinstance(a, str) for a in mine):
        raise errors.CNIError(errors.INVALID_CONFIG, f"runtimeConfig 'aliases.{req.network}' must be a list of strings")
    for name in mine:
        low = records.valid_name(name)
        if low not in out:
            out.append(low)
    return out


def _prev(req: Request) -> Result:
    return chained.previous(req, "netkit-dns")


def _container_ips(prev: Result) -> list[dict[str, Any]]:
    """prevResult's addresses of the container's interfaces (those with a sandbox), or all of them."""
    ifaces = prev.get("interfaces", [])
    ips = prev.get("ips", [])
    inside = [ip for ip in ips if isinstance(ip.get("interface"), int) and 0 <= ip["interface"] < len(ifaces)
              and ifaces[ip["interface"]].get("sandbox")]
    return inside or list(ips)


def add(req: Request) -> Result:
    """Record the container's names and addresses; the resolver serves them when ADD returns."""
    cfg = _Config(req)
    prev = _prev(req)
    names = _names(req)
    ips = _container_ips(prev)
    addresses = [str(ip["address"]) for ip in ips]
    gateways = [str(ip["gateway"]) for ip in ips if ip.get("gateway")]
    if not gateways:
        raise errors.CNIError(errors.INVALID_CONFIG, "prevResult has no gateway for the resolver to listen on",
                              "netkit-dns needs a bridge with isGateway")
    entry = records.Entry(req.container_id, req.ifname, names, addresses, _own_servers(req))
    with records.locked(cfg.data_dir), Rollback() as undo:
        old = records.load(cfg.data_dir, req.network)
        # The gateways and subnets of every live attachment (a network's ranges are the same for all);
        # a file without entries (of a previous boot) holds nothing still true.
        live = old if old is not None and old.entries else records.NetworkRecords(req.network)
        recs = records.NetworkRecords(req.network, cfg.domain, _union(live.gateways, gateways),
                                      _union(live.subnets, records.networks_of(addresses)), cfg.upstreams,
                                      live.without(req.container_id, req.ifname) + [entry])
        records.save(cfg.data_dir, recs)
        undo.push(_restore, cfg.data_dir, req.network, old)
        failed = [g for g in control.sync(cfg.data_dir) if g in gateways]
        if failed:
            raise errors.CNIError(errors.ADDRESS_UNAVAILABLE, "the resolver cannot listen on the gateway",
                                  f"port 53 of {', '.join(failed)} is taken by another server")
    out = dict(prev)
    out["dns"] = {"nameservers": [str(ipaddress.ip_address(g)) for g in gateways], "search": [cfg.domain]}
    return out


def _union(old: list[str], new: list[str]) -> list[str]:
    return old + [x for x in new if x not in old]


def _restore(data_dir: str, network: str, old: records.NetworkRecords | None) -> None:
    records.save(data_dir, old or records.NetworkRecords(network))
    control.sync(data_dir)


def delete(req: Request) -> None:
    """Remove the attachment's names at once; nothing recorded is success."""
    cfg = _Config(req)
    with records.locked(cfg.data_dir):
        recs = records.load(cfg.data_dir, req.network)
        if recs is None:
            return
        kept = recs.without(req.container_id, req.ifname)
        if len(kept) == len(recs.entries):
            return
        recs.entries = kept
        records.save(cfg.data_dir, recs)
        control.sync(cfg.data_dir)


def check(req: Request) -> None:
    """Fail unless the attachment's records are as ADD wrote them and the resolver runs."""
    cfg = _Config(req)
    prev = _prev(req)
    recs = records.load(cfg.data_dir, req.network)
    mine = [e for e in (recs.entries if recs else []) if (e.container_id, e.ifname) == (req.container_id, req.ifname)]
    if not mine:
        raise errors.CNIError(errors.CHECK_FAILED, "no DNS records for the attachment")
    if sorted(mine[0].addresses) != sorted(str(ip["address"]) for ip in _container_ips(prev)):
        raise errors.CNIError(errors.CHECK_FAILED, "the DNS records hold other addresses than prevResult")
    if mine[0].names != _names(req):
        raise errors.CNIError(errors.CHECK_FAILED, "the DNS records hold other names than asked")
    if control.ask(cfg.data_dir, "status") is None:
        raise errors.CNIError(errors.CHECK_FAILED, "no DNS daemon serves the network")


def gc(req: Request) -> None:
    """Drop the records of this network's attachments not in the valid list."""
    cfg = _Config(req)
    valid = req.valid_attachments
    with records.locked(cfg.data_dir):
        recs = records.load(cfg.data_dir, req.network)
        if recs is None:
            return
        kept = [e for e in recs.entries if (e.container_id, e.ifname) in valid]
        if len(kept) != len(recs.entries):
            recs.entries = kept
            records.save(cfg.data_dir, recs)
            control.sync(cfg.data_dir)


def status(req: Request) -> None:
    """Ready when the configuration is valid (the daemon starts with the first ADD)."""
    _Config(req)

