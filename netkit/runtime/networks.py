"""Networks of a netkit root: the default ``bridge``, ``host``, ``none``, and user-created bridges.

Every network is a CNI conflist of netkit's plugins; user networks are files under the root, the
mode networks are built on the fly.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
from dataclasses import dataclass
from typing import Any

from netkit import fileio
from netkit.ipam import pool
from netkit.net.routes import AF_INET6, host_routes
from netkit.runtime.root import Root
from netkit.runtime.state import ContainerError

CNI_VERSION = "1.1.0"  # the runtime's own conflists: GC and STATUS need 1.1.0
DEFAULT = "bridge"
DNS_DOMAIN = "dns.netkit"
MODES = ("host", "none")


@dataclass(frozen=True)
class Network:
    """One network of a root as `network ls` lists it."""

    name: str
    driver: str  # bridge, or the mode: host | none
    bridge: str = ""  # the Linux bridge of a bridge network
    subnet: str = ""  # its IPAM ranges' subnets, comma-separated


def _path(root: Root, name: str) -> str:
    return os.path.join(root.networks, f"{name}.conflist")


def _valid_name(name: str) -> None:
    if not name or len(name) > 64 or not all(c.isalnum() or c in "_.-" for c in name) or name[0] in ".-":
        raise ContainerError(f"invalid network name {name!r}", "letters, digits, '_', '.', '-'")


Subnet = ipaddress.IPv4Network | ipaddress.IPv6Network


def bridge_conflist(name: str, bridge: str, subnet: Subnet | list[tuple[Subnet, str]], gateway: str, data_dir: str,
                    internal: bool = False, isolate: bool = True, icc: bool = True, mtu: int = 0,
                    dns_dir: str = "") -> dict[str, Any]:
    """A bridge network through netkit-bridge (which also publishes ports) and netkit-ipam; with
    ``dns_dir``, netkit-dns chained after it, its records there (Docker: user networks resolve names).

    ``subnet`` is one subnet (its gateway ``gateway``), or (subnet, gateway) pairs, one of each
    family for a dual-stack network: one IPAM range set per family, a default route for each.
    ``internal``: no masquerade, no default route, and the bridge plugin drops whatever would be
    forwarded between the bridge and another interface, either way (Docker's internal network);
    ``mtu``: of the bridge, the veths and the container's interface (0: the kernel's default).
    """
    pairs = subnet if isinstance(subnet, list) else [(subnet, gateway)]
    defaults = {4: "0.0.0.0/0", 6: "::/0"}
    plugin: dict[str, Any] = {
        "type": "netkit-bridge",
        "bridge": bridge,
        "isGateway": True,
        "ipMasq": not internal,
        "hairpinMode": True,
        "isolate": isolate,
        "icc": icc,
    }
    if internal:
        plugin["internal"] = True
    if mtu:
        plugin["mtu"] = mtu
    plugin["capabilities"] = {"portMappings": True, "ips": True}
    plugin["ipam"] = {
        "type": "netkit-ipam",
        "ranges": [[{"subnet": str(net), "gateway": gw}] for net, gw in pairs],
        "routes": [] if internal else [{"dst": defaults[net.version]} for net, _ in pairs],
        "dataDir": data_dir,
    }
    conf: dict[str, Any] = {"cniVersion": CNI_VERSION, "name": name, "plugins": [plugin]}
    if dns_dir:
        conf["plugins"].append(dns_plugin(dns_dir, internal))
    return conf


def dns_plugin(records_dir: str, internal: bool = False) -> dict[str, Any]:
    """The conflist entry of netkit-dns (podman dnsname's keys, records under the runtime's root).

    An internal network's resolver forwards nothing (Docker's rule: no way out, not even by name).
    """
    entry = {"type": "netkit-dns", "domainName": DNS_DOMAIN, "capabilities": {"aliases": True, "dns": True},
             "dataDir": records_dir}
    return entry | ({"upstreams": []} if internal else {})


def internal(conf: dict[str, Any]) -> bool:
    """True for an internal network (written with --internal: its plugin says so, or, by an earlier
    version, no masquerade and no default route)."""
    plugin = conf["plugins"][0]
    legacy = (plugin.get("type") == "netkit-bridge" and not plugin.get("ipMasq")
              and not plugin.get("ipam", {}).get("routes"))
    return bool(plugin.get("internal")) or legacy


IPV6_MIN_MTU = 1280  # RFC 8200's minimum link MTU


def _mtu(value: str) -> int:
    """--mtu / -o mtu=N: the bridge plugin's range (68, IPv4's minimum, to 65535)."""
    try:
        mtu = int(value)
    except ValueError:
        mtu = -1
    if not 68 <= mtu <= 65535:
        raise ContainerError(f"invalid MTU {value!r}", "an integer from 68 to 65535")
    return mtu


def _subnets_in_use(root: Root) -> list[Subnet]:
    out = []
    for conf in _user_conflists(root).values():
        for rng in ranges(conf):
            out.append(ipaddress.ip_network(rng["subnet"], strict=False))
    return out


def ranges(conf: dict[str, Any]) -> list[dict[str, Any]]:
    """Every IPAM range of a network's conflist (one per family of a dual-stack network)."""
    ipam = conf["plugins"][0].get("ipam", {})
    return [r for s in ipam.get("ranges", []) for r in s]


def _free_subnet(root: Root) -> ipaddress.IPv4Network:
    try:
        return pool.choose_subnet(host_routes() + _subnets_in_use(root), pool.RUNTIME_SUBNETS)
    except pool.PoolExhausted:
        raise ContainerError("no free subnet left in the default pools; pass --subnet") from None


def ensure_default(root: Root) -> None:
    """Write the default ``bridge`` network (Docker's docker0 layout) if this root has none."""
    if os.path.exists(_path(root, DEFAULT)):
        return
    subnet = _free_subnet(root)
    conf = bridge_conflist(DEFAULT, pool.DEFAULT_BRIDGE, subnet, str(subnet.network_address + 1), root.ipam)
    fileio.write_atomic(_path(root, DEFAULT), json.dumps(conf, indent=2).encode())


def _user_conflists(root: Root) -> dict[str, dict[str, Any]]:
    out = {}
    try:
        names = sorted(os.listdir(root.networks))
    except FileNotFoundError:
        return {}
    for fname in names:
        if fname.endswith(".conflist"):
            try:
                with open(os.path.join(root.networks, fname), encoding="utf-8") as f:
                    out[fname[: -len(".conflist")]] = json.load(f)
            except (OSError, ValueError):
                continue
    return out


def mode_conflist(mode: str, owner_netns: str = "") -> dict[str, Any]:
    """The conflist of a mode that is not a bridge: host, none, or container:<owner>."""
    plugin: dict[str, Any] = {"type": f"netkit-{mode}"}
    if mode == "container":
        plugin["container"] = owner_netns
    return {"cniVersion": CNI_VERSION, "name": mode, "plugins": [plugin]}


def load(root: Root, name: str) -> dict[str, Any]:
    """A network's conflist by name (``bridge`` is the default one)."""
    if name in MODES:
        return mode_conflist(name)
    conf = _user_conflists(root).get(name)
    if conf is None:
        raise ContainerError(f"network {name} not found")
    return conf


def create(root: Root, name: str, subnet: str | list[str] | None = None, gateway: str | list[str] | None = None,
           internal: bool = False, options: dict[str, str] | None = None, ipv6: bool = False, mtu: int = 0,
           dns: bool = True) -> dict[str, Any]:
    """Write a new bridge network's conflist.

    ``subnet`` and ``gateway``: one each, or up to one of each family (Docker's repeated
    ``--subnet``/``--gateway``); a gateway goes with the subnet of its family.  ``ipv6`` (or an IPv6
    subnet) makes the network dual-stack, its IPv6 subnet a free unique local /64 unless given.
    Name resolution unless ``dns`` is False (--disable-dns); ``mtu`` 0: the option's, else the kernel's default.
    """
    _valid_name(name)
    if name in MODES or name == "container":
        raise ContainerError(f"network name {name!r} is reserved")
    # Docker's and netavark's spellings of the same options.
    aliases = {"isolation": "isolate", "enable_icc": "icc", "com.docker.network.bridge.enable_icc": "icc",
               "com.docker.network.driver.mtu": "mtu"}
    opts = {aliases.get(k, k): v for k, v in (options or {}).items()}
    # Another runtime's lease store (an absolute path): runtimes sharing it never hand out one
    # address twice; each one's `system prune` then leaves the network's leases and links alone.
    ipam_dir = opts.pop("ipam_dir", opts.pop("ipam-dir", ""))
    if ipam_dir and not os.path.isabs(ipam_dir):
        raise ContainerError(f"option ipam_dir must be an absolute path, not {ipam_dir!r}")
    flags = {}
    for key in ("isolate", "icc"):
        value = opts.pop(key, "true").lower()
        if value not in ("true", "false"):
            raise ContainerError(f"option {key} must be true or false")
        flags[key] = value == "true"
    option_mtu = opts.pop("mtu", "")
    mtu = _mtu(str(mtu)) if mtu else _mtu(option_mtu) if option_mtu else 0  # --mtu wins over -o mtu=
    if opts:
        raise ContainerError(f"unknown network option {', '.join(sorted(opts))}", "known: isolate, icc, ipam_dir, mtu")
    with root.locked():
        if os.path.exists(_path(root, name)):
            raise ContainerError(f"network with name {name} already exists")
        pairs = _subnets(root, _as_list(subnet), _as_list(gateway), ipv6)
        if 0 < mtu < IPV6_MIN_MTU and any(net.version == 6 for net, _ in pairs):
            # The kernel turns IPv6 off on a link below it: the network's IPv6 side would be dead.
            raise ContainerError(f"invalid MTU {mtu}: a network with an IPv6 subnet needs at least {IPV6_MIN_MTU}")
        bridge = "br-" + hashlib.sha256(name.encode()).hexdigest()[:12]
        conf = bridge_conflist(name, bridge, pairs, "", ipam_dir or root.ipam, internal, flags["isolate"],
                               flags["icc"], mtu, _dns_dir(root, ipam_dir) if dns else "")
        fileio.write_atomic(_path(root, name), json.dumps(conf, indent=2).encode())
    return conf


def _dns_dir(root: Root, ipam_dir: str) -> str:
    """Where a network's DNS records live: under the root, or beside the leases another runtime shares
    (``-o ipam_dir``): one resolver per gateway can listen, so the runtimes sharing a network share it,
    and their containers resolve each other's names."""
    return os.path.join(ipam_dir, ".dns") if ipam_dir else os.path.join(root.path, "dns")


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [v for v in value if v]


def _subnets(root: Root, subnets: list[str], gateways: list[str], ipv6: bool) -> list[tuple[Subnet, str]]:
    """(subnet, gateway) per family of the new network, IPv4 first: the given ones, checked, and a
    free one for each family asked for but not given."""
    try:
        nets = [ipaddress.ip_network(s, strict=False) for s in subnets]
        gws = [ipaddress.ip_address(g) for g in gateways]
    except ValueError as exc:
        raise ContainerError("invalid subnet or gateway", str(exc)) from None
    by_family: dict[int, Subnet] = {}
    for net in nets:
        if net.version in by_family:
            raise ContainerError(f"two IPv{net.version} subnets: {by_family[net.version]} and {net}",
                                 "one --subnet of each family")
        by_family[net.version] = net
    if 6 in by_family:
        ipv6 = True
    in_use = _subnets_in_use(root)
    if 4 not in by_family:
        by_family[4] = _free_subnet(root)
    if ipv6 and 6 not in by_family:
        try:
            by_family[6] = pool.choose_ula(host_routes(AF_INET6) + in_use)
        except pool.PoolExhausted as exc:
            raise ContainerError(str(exc), "pass an IPv6 --subnet") from None
    gateway_of: dict[int, ipaddress.IPv4Address | ipaddress.IPv6Address] = {}
    for gw in gws:
        net = by_family.get(gw.version)
        if net is None or gw not in net or gw.version in gateway_of:
            raise ContainerError(f"gateway {gw} is not in subnet {net or 'of its family'}")
        gateway_of[gw.version] = gw
    pairs = []
    for version in sorted(by_family):
        net = by_family[version]
        if version == 6 and net.prefixlen > 120:
            raise ContainerError(f"IPv6 subnet {net} is too small", "a /64 is usual; at most /120")
        if any(net.overlaps(u) for u in in_use):
            raise ContainerError(f"subnet {net} overlaps another network's")
        pairs.append((net, str(gateway_of.get(version, net.network_address + 1))))
    return pairs


def shared_with_others(root: Root, conf: dict[str, Any]) -> bool:
    """True when the network keeps its leases outside this root (``-o ipam_dir``): other runtimes
    have attachments on it that this root's records do not know."""
    data_dir = conf["plugins"][0].get("ipam", {}).get("dataDir", root.ipam)
    return os.path.abspath(data_dir) != os.path.abspath(root.ipam)


def listing(root: Root) -> list[Network]:
    """Every network of the root, the mode ones included."""
    out = [Network(n, "bridge", c["plugins"][0].get("bridge", ""), ",".join(r["subnet"] for r in ranges(c)))
           for n, c in _user_conflists(root).items()]
    out += [Network(m, m) for m in MODES]
    return out


def remove(root: Root, name: str, in_use: list[str]) -> None:
    """Delete a user network (refused while containers use it) and its bridge."""
    if name in MODES or name == DEFAULT:
        raise ContainerError(f"{name} is a pre-defined network and cannot be removed")
    conf = load(root, name)
    if in_use:
        raise ContainerError(f"network {name} has active endpoints", ", ".join(in_use))
    os.unlink(_path(root, name))
    from netkit.net import links

    with links.Socket() as nl:
        bridge = links.lookup(nl, conf["plugins"][0].get("bridge", ""))
        if bridge is not None and not links.ports(nl, bridge.index):  # another runtime's may use it
            links.delete(nl, bridge.name)
