"""netkit-ipam: host-local address management (drop-in for the reference ``host-local``)."""

from __future__ import annotations

import ipaddress
from typing import Any

from netkit import errors, failpoints
from netkit.cni.request import Request
from netkit.cni.result import Result
from netkit.ipam import allocator, config, requester
from netkit.ipam.config import Address
from netkit.ipam.store import LeaseStore, current_boot_id


def _store(req: Request, cfg: config.IPAMConfig) -> LeaseStore:
    return LeaseStore(cfg.data_dir, req.network)


def requested_addresses(req: Request) -> list[Address]:
    """Addresses asked for by CNI_ARGS ``IP=``, ``runtimeConfig.ips`` or ``args.cni.ips``."""
    raw: list[Any] = []
    if req.args.get("IP"):
        raw += req.args["IP"].split(",")
    args = req.config.get("args")
    cni_args = args.get("cni") if isinstance(args, dict) else None
    for source in (req.runtime_config.get("ips"), cni_args.get("ips") if isinstance(cni_args, dict) else None):
        if source is None:
            continue
        if not isinstance(source, list) or not all(isinstance(item, str) for item in source):
            raise errors.CNIError(errors.INVALID_CONFIG, "requested ips must be a list of strings", repr(source)[:200])
        raw += source
    out: list[Address] = []
    for item in raw:
        try:
            addr = ipaddress.ip_interface(item.strip()).ip
        except ValueError:
            raise errors.CNIError(errors.INVALID_CONFIG, "invalid requested IP", repr(item)) from None
        if addr not in out:
            out.append(addr)
    return out


def _dns(path: str) -> dict[str, Any]:
    """Read a resolv.conf into the result's dns object."""
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise errors.CNIError(errors.IO_FAILURE, f"failed to read resolvConf {path}", str(exc)) from None
    dns: dict[str, Any] = {}
    for line in lines:
        fields = line.split()
        if not fields or fields[0].startswith(("#", ";")):
            continue
        key, values = fields[0], fields[1:]
        if key == "nameserver" and values:
            dns.setdefault("nameservers", []).append(values[0])
        elif key == "domain" and values:
            dns["domain"] = values[0]
        elif key == "search":
            dns["search"] = values
        elif key == "options":
            dns.setdefault("options", []).extend(values)
    return dns


def add(req: Request) -> Result:
    """Reserve one address per range set and return them with routes and DNS."""
    cfg = config.parse(req.config)
    store = _store(req, cfg)
    requested = requested_addresses(req)
    dns = _dns(cfg.resolv_conf)  # before allocating: a failure here must not leave a lease
    failpoints.hit("ipam.add.before-lock")
    with store.locked():
        if requester.gone(req.env):
            # Checked under the lock: see netkit.ipam.requester for why this cannot race the DEL.
            raise errors.CNIError(errors.TRY_AGAIN_LATER, "the plugin that asked for this address has exited",
                                  "no lease reserved for a dead requester")
        chosen = allocator.allocate(store, cfg, req.container_id, req.ifname, requested, current_boot_id())
    failpoints.hit("ipam.add.after-allocate")
    ips = []
    for addr, rng in chosen:
        ip: dict[str, Any] = {"address": f"{addr}/{rng.subnet.prefixlen}"}
        if rng.gateway is not None:
            ip["gateway"] = str(rng.gateway)
        ips.append(ip)
    result: Result = {"ips": ips, "routes": [r.to_result() for r in cfg.routes]}
    if dns:
        result["dns"] = dns
    return result


def delete(req: Request) -> None:
    """Release the attachment's leases; nothing to release is success."""
    cfg = config.parse(req.config)
    store = _store(req, cfg)
    with store.locked():
        # Every lease read (not only the hinted ones): the reference host-local may have written some.
        for lease in store.leases(req.container_id):
            if lease.owned_by(req.container_id, req.ifname):
                store.release(lease.address)
                failpoints.hit("ipam.del.after-release")
        store.forget(req.container_id, req.ifname)


def check(req: Request) -> None:
    """Fail unless the attachment holds a lease in every range set (and prevResult agrees)."""
    cfg = config.parse(req.config)
    held = {lease.address for lease in _store(req, cfg).leases(req.container_id)
            if lease.owned_by(req.container_id, req.ifname)}
    for range_set in cfg.range_sets:
        if not any(addr in r for addr in held for r in range_set):
            raise errors.CNIError(errors.CHECK_FAILED, "no lease held for the attachment",
                                  f"{req.container_id}/{req.ifname} in {range_set[0].subnet}")
    prev = req.prev_result
    if prev is not None:
        for ip in prev.get("ips", []):
            addr = ipaddress.ip_interface(ip["address"]).ip
            in_ours = any(addr in r for s in cfg.range_sets for r in s)
            if in_ours and addr not in held:
                raise errors.CNIError(errors.CHECK_FAILED, f"address {addr} is not leased to the attachment")


def gc(req: Request) -> None:
    """Release every lease whose attachment is not in ``cni.dev/valid-attachments``."""
    cfg = config.parse(req.config)
    valid = req.valid_attachments
    store = _store(req, cfg)
    with store.locked():
        for lease in store.leases():
            if (lease.container_id, lease.ifname) not in valid:
                store.release(lease.address)
        store.forget_all_but(valid)


def status(req: Request) -> None:
    """Ready when the lease directory is usable and every range set has a free address."""
    cfg = config.parse(req.config)
    store = _store(req, cfg)
    try:
        with store.locked():
            taken = store.taken()
    except errors.CNIError as exc:
        raise errors.CNIError(errors.NOT_AVAILABLE, "lease store unusable", str(exc)) from None
    for range_set in cfg.range_sets:
        size = sum(r.size() for r in range_set)
        used = sum(1 for a in taken if any(a in r for r in range_set))
        if used >= size:
            raise errors.CNIError(errors.NOT_AVAILABLE, "address pool exhausted",
                                  ", ".join(str(r.subnet) for r in range_set))
