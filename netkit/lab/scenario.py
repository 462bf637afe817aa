"""A lab scenario: the YAML file, validated into a model, with errors that name the file and line.

The same model drives every backend (local namespaces, Vagrant boxes), so everything a backend
needs — every address included — is decided here, deterministically, from the file alone.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

import yaml

from netkit import errors
from netkit.ipam import pool

LAB_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
HOST_NAME = re.compile(r"^[a-z][a-z0-9-]{0,14}$")
LINK_NAME = re.compile(r"^[a-z][a-z0-9-]{0,14}$")  # becomes an interface name inside each host
CONTAINER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")
# Links without a subnet get consecutive /24s from here: a range no laptop or cloud VM network uses by default.
AUTO_LINK_POOL = ipaddress.ip_network("10.250.0.0/16")
PROTOS = ("tcp", "udp", "icmp", "http", "dns")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
SERVE_KEYS = {"http", "body", "tcp", "udp", "proxy", "backends"}
POD_NETWORK = "pods"  # on a host that is a Kubernetes node: the network of `netkit node`'s conflist


class ScenarioError(errors.CNIError):
    """The scenario file is wrong; the message starts with ``FILE:LINE:``."""

    def __init__(self, msg: str) -> None:
        super().__init__(errors.INVALID_CONFIG, msg)


@dataclass
class Link:
    """A wire between hosts: a veth pair for two hosts, a bridge (a shared segment) for more."""

    name: str
    subnet: ipaddress.IPv4Network
    members: list[str] = field(default_factory=list)
    subnet6: ipaddress.IPv6Network | None = None  # dual stack: hosts get an address of this too

    @property
    def kind(self) -> str:
        return "veth" if len(self.members) == 2 else "segment"


@dataclass
class Network:
    """A netkit network on one host (``netkit network create``)."""

    name: str
    subnet: str | None
    isolate: bool = True
    icc: bool = True
    internal: bool = False
    ipv6: str | None = None  # None: IPv4 only; "auto": a free ULA /64; else the IPv6 subnet


@dataclass
class Container:
    """A container on one host (``netkit run -d``)."""

    name: str
    net: str = "bridge"  # the first network (a mode, container:NAME, or a network of the host)
    ports: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    serve: dict[str, Any] = field(default_factory=dict)
    ip: str = ""
    more_nets: list[str] = field(default_factory=list)  # the networks after the first (eth1, eth2, ...)
    aliases: list[str] = field(default_factory=list)  # --network-alias: names it answers to besides its own

    @property
    def nets(self) -> list[str]:
        """Every network of the container, the first one first."""
        return [self.net, *self.more_nets]


@dataclass
class Route:
    """A route on one host; ``via`` is an address or a host name (its address on a shared link)."""

    to: IPNetwork
    via: str


@dataclass
class Host:
    """A machine running netkit."""

    name: str
    addresses: dict[str, ipaddress.IPv4Interface] = field(default_factory=dict)  # link name -> address
    addresses6: dict[str, ipaddress.IPv6Interface] = field(default_factory=dict)  # on dual-stack links
    networks: dict[str, Network] = field(default_factory=dict)
    containers: dict[str, Container] = field(default_factory=dict)
    routes: list[Route] = field(default_factory=list)
    pod_cidrs: list[IPNetwork] = field(default_factory=list)  # a Kubernetes node: its podCIDRs (one per family)

    @property
    def is_node(self) -> bool:
        """True when the host is a Kubernetes node (``kubernetes:``): it runs `netkit node`."""
        return bool(self.pod_cidrs)


@dataclass
class Check:
    """One reachability assertion of ``lab test``."""

    line: int
    source: str  # HOST or HOST/CONTAINER
    to: str  # HOST, HOST@LINK, HOST/CONTAINER or an address; optionally :PORT
    proto: str = "tcp"
    expect: str = "ok"
    published: str = ""  # CONTAINER/PORT[/PROTO]: the port the host published for it
    path: str = "/"
    body: str = ""
    bodies: list[str] = field(default_factory=list)
    family: int = 4  # the address family of the target: 6 probes its IPv6 address (AAAA for names)
    resolve: bool = False  # to: is a name the source container resolves through its DNS server

    def label(self) -> str:
        """How the check reads in the matrix."""
        target = self.to + (f" [{self.published}]" if self.published else "")
        return f"{self.source} -> {target} {self.proto}" + (" v6" if self.family == 6 else "")


@dataclass
class Scenario:
    """A whole lab."""

    name: str
    path: str
    description: str = ""
    links: dict[str, Link] = field(default_factory=dict)
    hosts: dict[str, Host] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    cluster_cidrs: list[IPNetwork] = field(default_factory=list)  # pod traffic leaving these is masqueraded
    cluster_link: str = ""  # the link every Kubernetes node is on: their InternalIPs

    def nodes(self) -> list[Host]:
        """The hosts that are Kubernetes nodes, in file order."""
        return [h for h in self.hosts.values() if h.is_node]

    def internal_ips(self, host: str) -> list[str]:
        """A node's InternalIPs: its addresses on the cluster link (IPv4, and IPv6 on a dual-stack link)."""
        h = self.hosts[host]
        return [str(a[self.cluster_link].ip) for a in (h.addresses, h.addresses6) if self.cluster_link in a]

    def container_order(self, host: Host) -> list[Container]:
        """Containers in start order: a container:<name> joiner after the container it joins."""
        done: list[Container] = []
        pending = list(host.containers.values())
        while pending:
            for c in pending:
                owner = c.net.split(":", 1)[1] if c.net.startswith("container:") else ""
                if not owner or owner in {d.name for d in done}:
                    done.append(c)
                    pending.remove(c)
                    break
        return done

    def address_of(self, host: str, from_host: str = "", link: str = "", family: int = 4) -> str:
        """A host's address of ``family``: on ``link``, else on a link shared with ``from_host``, else its first."""
        h = self.hosts[host]
        mine: dict[str, Any] = h.addresses if family == 4 else h.addresses6
        if link:
            if link not in mine:
                raise ScenarioError(f"{self.path}: host {host} has no IPv{family} address on link {link}")
            return str(mine[link].ip)
        if from_host and from_host in self.hosts:
            theirs = self.hosts[from_host].addresses if family == 4 else self.hosts[from_host].addresses6
            for name, iface in mine.items():
                if name in theirs:
                    return str(iface.ip)
        if not mine:
            raise ScenarioError(f"{self.path}: host {host} has no IPv{family} address (no "
                                f"{'link' if family == 4 else 'dual-stack link'})")
        return str(next(iter(mine.values())).ip)


class _Lines:
    """Line numbers of every node of the YAML document, by path."""

    def __init__(self, node: yaml.Node | None) -> None:
        self.lines: dict[tuple[Any, ...], int] = {}
        if node is not None:
            self._walk(node, ())

    def _walk(self, node: yaml.Node, path: tuple[Any, ...]) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                self._walk(value, (*path, key.value))
                self.lines[(*path, key.value)] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, (*path, i))

    def at(self, path: tuple[Any, ...]) -> int:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)


class _Reader:
    """Typed access to the loaded document that reports errors at the right line."""

    def __init__(self, path: str, lines: _Lines) -> None:
        self.file, self.lines = path, lines

    def fail(self, where: tuple[Any, ...], msg: str) -> ScenarioError:
        dotted = ".".join(str(p) for p in where)
        return ScenarioError(f"{self.file}:{self.lines.at(where)}: {dotted + ': ' if dotted else ''}{msg}")

    def mapping(self, value: Any, where: tuple[Any, ...], allowed: set[str] | None = None) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(where, f"must be a mapping, not {type(value).__name__}")
        for key in value:
            if not isinstance(key, str):
                raise self.fail(where, f"key {key!r} must be a string")
            if allowed is not None and key not in allowed:
                raise self.fail((*where, key), f"unknown key (known: {', '.join(sorted(allowed))})")
        return value

    def seq(self, value: Any, where: tuple[Any, ...]) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(where, f"must be a list, not {type(value).__name__}")
        return value

    def text(self, value: Any, where: tuple[Any, ...], pattern: re.Pattern[str] | None = None) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self.fail(where, "must be a string")
        text = str(value)
        if pattern is not None and not pattern.match(text):
            raise self.fail(where, f"{text!r} is not a valid name ({pattern.pattern})")
        return text

    def network(self, value: Any, where: tuple[Any, ...], version: int | None = 4) -> Any:
        """A subnet of IP ``version`` (None: either)."""
        try:
            net = ipaddress.ip_network(self.text(value, where), strict=False)
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None
        if version is not None and net.version != version:
            raise self.fail(where, f"must be an IPv{version} subnet")
        return net

    def flag(self, value: Any, where: tuple[Any, ...]) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, "must be true or false")
        return value

    def names(self, value: Any, where: tuple[Any, ...], pattern: re.Pattern[str]) -> list[str]:
        """A name or a list of names."""
        items = value if isinstance(value, list) else [value]
        return [self.text(v, (*where, i) if isinstance(value, list) else where, pattern) for i, v in enumerate(items)]


def load(path: str) -> Scenario:
    """Read and validate a scenario file."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from None
    return parse(text, path)


def parse(text: str, path: str = "<scenario>") -> Scenario:
    """Validate scenario YAML ``text``; ``path`` names it in errors and gives the default lab name."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"{mark.line + 1}:" if mark else ""
        raise ScenarioError(f"{path}:{line} invalid YAML: {getattr(exc, 'problem', exc)}") from None
    r = _Reader(path, _Lines(node))
    top = r.mapping(doc, (), {"name", "description", "links", "hosts", "checks", "kubernetes"})
    default_name = os.path.splitext(os.path.basename(path))[0] if path != "<scenario>" else "lab"
    sc = Scenario(name=r.text(top.get("name", default_name), ("name",), LAB_NAME),
                  path=path, description=str(top.get("description", "") or ""))
    declared = r.mapping(top.get("links"), ("links",))
    for name, spec in declared.items():
        r.text(name, ("links", name), LINK_NAME)
        spec = r.mapping(spec, ("links", name), {"subnet", "ipv6"})
        subnet = r.network(spec["subnet"], ("links", name, "subnet")) if "subnet" in spec else None
        subnet6 = r.network(spec["ipv6"], ("links", name, "ipv6"), 6) if "ipv6" in spec else None
        if subnet6 is not None and subnet6.num_addresses < 256:
            raise r.fail(("links", name, "ipv6"), "an IPv6 link needs at least a /120")
        sc.links[name] = Link(name, subnet, subnet6=subnet6)  # type: ignore[arg-type] - subnet filled below
    hosts = r.mapping(top.get("hosts"), ("hosts",))
    if not hosts:
        raise r.fail(("hosts",), "a scenario needs at least one host")
    wanted: dict[str, dict[str, str | None]] = {}
    for name, spec in hosts.items():
        r.text(name, ("hosts", name), HOST_NAME)
        spec = r.mapping(spec, ("hosts", name), {"links", "networks", "containers", "routes", "kubernetes"})
        sc.hosts[name] = _host(r, name, spec)
        wanted[name] = _host_links(r, name, spec.get("links"), sc.links)
    _assign_addresses(r, sc, wanted)
    for name, spec in hosts.items():
        for i, route in enumerate(r.seq((spec or {}).get("routes"), ("hosts", name, "routes"))):
            sc.hosts[name].routes.append(_route(r, sc, name, route, ("hosts", name, "routes", i)))
    _cluster(r, sc, top.get("kubernetes"))
    for i, check in enumerate(r.seq(top.get("checks"), ("checks",))):
        sc.checks.append(_check(r, sc, check, ("checks", i)))
    return sc


def _cidrs(r: _Reader, value: Any, where: tuple[Any, ...]) -> list[IPNetwork]:
    """One CIDR or a list of them, at most one per family."""
    items = value if isinstance(value, list) else [value]
    out = [r.network(v, (*where, i) if isinstance(value, list) else where, None) for i, v in enumerate(items)]
    if len({n.version for n in out}) != len(out):
        raise r.fail(where, "at most one subnet per IP family")
    return out


def _node(r: _Reader, host: Host, value: Any) -> None:
    where = ("hosts", host.name, "kubernetes")
    spec = r.mapping(value, where, {"podCIDR"})
    if "podCIDR" not in spec:
        raise r.fail(where, "a Kubernetes node needs podCIDR: SUBNET (or a list, one per family)")
    host.pod_cidrs = _cidrs(r, spec["podCIDR"], (*where, "podCIDR"))
    if POD_NETWORK in host.networks:
        raise r.fail(("hosts", host.name, "networks", POD_NETWORK),
                     f"{POD_NETWORK!r} is a Kubernetes node's pod network: give this network another name")


def _cluster(r: _Reader, sc: Scenario, value: Any) -> None:
    """The cluster of the hosts with ``kubernetes:``: its CIDR, the link its nodes share, their subnets."""
    nodes = sc.nodes()
    if value is not None:
        spec = r.mapping(value, ("kubernetes",), {"clusterCIDR"})
        if "clusterCIDR" in spec:
            sc.cluster_cidrs = _cidrs(r, spec["clusterCIDR"], ("kubernetes", "clusterCIDR"))
        if not nodes:
            raise r.fail(("kubernetes",), "no host is a Kubernetes node (give one kubernetes: {podCIDR: ...})")
    if not nodes:
        return
    shared = [link for link in sc.links if all(link in h.addresses for h in nodes)]
    if not shared:
        raise r.fail(("hosts", nodes[0].name, "kubernetes"), "Kubernetes nodes must share a link (their InternalIPs "
                                                             "are on it, and the routes to pods go over it)")
    sc.cluster_link = shared[0]
    seen: dict[IPNetwork, str] = {}
    for h in nodes:
        where = ("hosts", h.name, "kubernetes", "podCIDR")
        for cidr in h.pod_cidrs:
            if sc.cluster_cidrs and not any(cidr.version == c.version and cidr.subnet_of(c)  # type: ignore[arg-type]
                                            for c in sc.cluster_cidrs):
                raise r.fail(where, f"{cidr} is not inside the clusterCIDR ({', '.join(map(str, sc.cluster_cidrs))})")
            if cidr.version == 6 and sc.links[sc.cluster_link].subnet6 is None:
                raise r.fail(where, f"an IPv6 podCIDR needs link {sc.cluster_link} to be dual-stack (ipv6: SUBNET)")
            other = next((n for n, owner in seen.items() if n.overlaps(cidr)), None)  # type: ignore[arg-type]
            if other is not None:
                raise r.fail(where, f"{cidr} overlaps {other} of node {seen[other]}")
            seen[cidr] = h.name


def _host(r: _Reader, name: str, spec: dict[str, Any]) -> Host:
    host = Host(name)
    for net, nspec in r.mapping(spec.get("networks"), ("hosts", name, "networks")).items():
        where = ("hosts", name, "networks", net)
        r.text(net, where, CONTAINER_NAME)
        if net in ("bridge", "host", "none", "container"):
            raise r.fail(where, f"{net!r} is a pre-defined network")
        nspec = r.mapping(nspec, where, {"subnet", "isolate", "icc", "internal", "ipv6"})
        subnet = str(r.network(nspec["subnet"], (*where, "subnet"))) if "subnet" in nspec else None
        flags = {key: r.flag(nspec.get(key, default), (*where, key))
                 for key, default in (("isolate", True), ("icc", True), ("internal", False))}
        ipv6 = nspec.get("ipv6")
        if ipv6 is True:
            ipv6 = "auto"
        elif ipv6 is not None and ipv6 is not False:
            ipv6 = str(r.network(ipv6, (*where, "ipv6"), 6))
        host.networks[net] = Network(net, subnet, ipv6=ipv6 or None, **flags)
    if "kubernetes" in spec:
        _node(r, host, spec["kubernetes"])
    for cname, cspec in r.mapping(spec.get("containers"), ("hosts", name, "containers")).items():
        host.containers[cname] = _container(r, host, cname, cspec, ("hosts", name, "containers", cname))
    for c in host.containers.values():
        owner = c.net.split(":", 1)[1] if c.net.startswith("container:") else ""
        if owner and owner not in host.containers:
            raise r.fail(("hosts", name, "containers", c.name, "net"), f"no container {owner!r} on host {name}")
        if owner == c.name:
            raise r.fail(("hosts", name, "containers", c.name, "net"), "a container cannot join itself")
    return host


def _container(r: _Reader, host: Host, name: str, spec: Any, where: tuple[Any, ...]) -> Container:
    r.text(name, where, CONTAINER_NAME)
    spec = r.mapping(spec, where, {"net", "ports", "cmd", "serve", "ip", "aliases"})
    c = Container(name)
    nets = r.names(spec.get("net", "bridge"), (*where, "net"), re.compile(r"^\S+$"))
    if not nets:
        raise r.fail((*where, "net"), "give at least one network")
    c.net, c.more_nets = nets[0], nets[1:]
    for i, net in enumerate(nets):
        at = (*where, "net", i) if len(nets) > 1 else (*where, "net")
        if net in ("host", "none") or net.startswith("container:"):
            if len(nets) > 1:
                raise r.fail(at, f"{net} is a network mode: it cannot be combined with other networks")
        elif net == POD_NETWORK and host.is_node:
            pass  # the node's pod network, as `netkit node` writes it
        elif net != "bridge" and net not in host.networks:
            raise r.fail(at, f"unknown network {net!r} (bridge, host, none, container:NAME, one of this host's "
                             f"networks{', or pods on a Kubernetes node' if not host.is_node else ''})")
        if nets.count(net) > 1:
            raise r.fail(at, f"network {net} is given twice")
    c.aliases = r.names(spec.get("aliases", []), (*where, "aliases"), CONTAINER_NAME)
    if c.aliases and all(n in ("bridge", "host", "none", POD_NETWORK) or n.startswith("container:") for n in nets):
        raise r.fail((*where, "aliases"), "aliases are names on user-defined networks with DNS: this container "
                                          "is on none")
    c.ports = [r.text(p, (*where, "ports", i)) for i, p in enumerate(r.seq(spec.get("ports"), (*where, "ports")))]
    if c.ports:
        from netkit.runtime import ports as port_specs

        for i, p in enumerate(c.ports):
            try:
                port_specs.parse(p)
            except errors.CNIError as exc:
                raise r.fail((*where, "ports", i), exc.msg) from None
    cmd = spec.get("cmd")
    if isinstance(cmd, str):
        c.cmd = shlex.split(cmd)  # split like a shell would, but exec'd without one (exec form)
    else:
        c.cmd = [r.text(a, (*where, "cmd", i)) for i, a in enumerate(r.seq(cmd, (*where, "cmd")))]
    c.serve = r.mapping(spec.get("serve"), (*where, "serve"), SERVE_KEYS)
    if bool(c.cmd) == bool(c.serve):
        raise r.fail(where, "give exactly one of cmd (the process) or serve (netkit's test servers)")
    for key in ("http", "tcp", "udp", "proxy"):
        value = c.serve.get(key, [])
        for port in value if isinstance(value, list) else [value]:
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                raise r.fail((*where, "serve", key), "must be a port number or a list of them")
    if "proxy" in c.serve and not c.serve.get("backends"):
        raise r.fail((*where, "serve"), "a proxy needs backends: [TARGET:PORT, ...]")
    if "ip" in spec:
        c.ip = r.text(spec["ip"], (*where, "ip"))
        try:
            ipaddress.IPv4Address(c.ip)
        except ValueError as exc:
            raise r.fail((*where, "ip"), str(exc)) from None
    return c


def _host_links(r: _Reader, host: str, value: Any, links: dict[str, Link]) -> dict[str, str | None]:
    """link name -> requested address (None: automatic) for one host."""
    where = ("hosts", host, "links")
    if isinstance(value, list):
        items: dict[str, Any] = {r.text(v, (*where, i)): None for i, v in enumerate(value)}
    else:
        items = r.mapping(value, where)
    out: dict[str, str | None] = {}
    for link, addr in items.items():
        r.text(link, (*where, link), LINK_NAME)
        if link not in links:
            links[link] = Link(link, None)  # type: ignore[arg-type] - a link may be declared by use alone
        out[link] = None if addr is None else r.text(addr, (*where, link))
    return out


def _assign_addresses(r: _Reader, sc: Scenario, wanted: dict[str, dict[str, str | None]]) -> None:
    auto = list(AUTO_LINK_POOL.subnets(new_prefix=24))
    taken = [link.subnet for link in sc.links.values() if link.subnet is not None]
    for link in sc.links.values():
        if link.subnet is None:
            try:
                link.subnet = pool.choose_subnet(taken, auto)
            except pool.PoolExhausted:
                raise r.fail(("links", link.name), f"no free /24 left in {AUTO_LINK_POOL} for this link: "
                                                   "give it a subnet") from None
            taken.append(link.subnet)
        link.members = [h for h in wanted if link.name in wanted[h]]
        if not link.members:
            raise r.fail(("links", link.name), "no host is on this link")
        used: set[ipaddress.IPv4Address] = set()
        for h in link.members:
            addr = wanted[h][link.name]
            if addr is None:
                continue
            where = ("hosts", h, "links", link.name)
            try:
                ip = ipaddress.IPv4Address(addr.split("/")[0])
            except ValueError as exc:
                raise r.fail(where, str(exc)) from None
            if ip not in link.subnet or ip in (link.subnet.network_address, link.subnet.broadcast_address):
                raise r.fail(where, f"{ip} is not a host address of link {link.name} ({link.subnet})")
            if ip in used:
                raise r.fail(where, f"{ip} is used twice on link {link.name}")
            used.add(ip)
            sc.hosts[h].addresses[link.name] = ipaddress.IPv4Interface(f"{ip}/{link.subnet.prefixlen}")
        # Automatic addresses start at .10: the low ones are what people give routers and gateways
        # (and VirtualBox warns about .1 on a private network).
        free = (ip for i, ip in enumerate(link.subnet.hosts()) if i >= 9 and ip not in used)
        for h in link.members:
            if link.name not in sc.hosts[h].addresses:
                sc.hosts[h].addresses[link.name] = ipaddress.IPv4Interface(f"{next(free)}/{link.subnet.prefixlen}")
        if link.subnet6 is not None:
            # The same host number in the IPv6 subnet: 10.253.0.10 is fd00:253::a, easy to tell apart.
            for h in link.members:
                offset = int(sc.hosts[h].addresses[link.name].ip) - int(link.subnet.network_address)
                ip6 = link.subnet6.network_address + offset
                sc.hosts[h].addresses6[link.name] = ipaddress.IPv6Interface(f"{ip6}/{link.subnet6.prefixlen}")


def _route(r: _Reader, sc: Scenario, host: str, spec: Any, where: tuple[Any, ...]) -> Route:
    spec = r.mapping(spec, where, {"to", "via"})
    if "to" not in spec or "via" not in spec:
        raise r.fail(where, "a route needs to: SUBNET and via: HOST|ADDRESS")
    to = r.network(spec["to"], (*where, "to"), None)
    via = r.text(spec["via"], (*where, "via"))
    if via in sc.hosts:
        mine, theirs = ((sc.hosts[h].addresses if to.version == 4 else sc.hosts[h].addresses6) for h in (host, via))
        if not set(mine) & set(theirs):
            raise r.fail((*where, "via"), f"host {via} shares no {'dual-stack ' if to.version == 6 else ''}"
                                          f"link with {host}")
        via = sc.address_of(via, host, family=to.version)
    else:
        try:
            gateway = ipaddress.ip_address(via)
        except ValueError:
            raise r.fail((*where, "via"), f"{via!r} is neither a host nor an IP address") from None
        if gateway.version != to.version:
            raise r.fail((*where, "via"), f"an IPv{to.version} route needs an IPv{to.version} gateway")
    return Route(to, via)


def split_target(to: str) -> tuple[str, str]:
    """``to:`` as (endpoint, port): HOST:80, 10.0.0.1:80, [fd00::1]:80, fd00::1, NAME:80 ('' when no port)."""
    if to.startswith("["):
        addr, _, rest = to[1:].partition("]")
        return addr, rest.removeprefix(":")
    if to.count(":") > 1:  # an IPv6 address without a port
        return to, ""
    ref, sep, port = to.rpartition(":")
    return (ref, port) if sep else (to, "")


def _endpoint_ok(sc: Scenario, ref: str) -> str:
    """'' when ``ref`` (HOST, HOST@LINK, HOST/CONTAINER or an address) names something real; else why not."""
    host, _, rest = ref.partition("/")
    host, _, link = host.partition("@")
    if host not in sc.hosts:
        try:
            ipaddress.ip_address(ref)
            return ""
        except ValueError:
            return f"unknown host {host!r}"
    if link and link not in sc.hosts[host].addresses:
        return f"host {host} is not on link {link!r}"
    if rest and rest not in sc.hosts[host].containers:
        return f"no container {rest!r} on host {host}"
    return ""


def _check(r: _Reader, sc: Scenario, spec: Any, where: tuple[Any, ...]) -> Check:
    spec = r.mapping(spec, where, {"from", "to", "proto", "expect", "published", "path", "body", "bodies", "family",
                                   "resolve"})
    for key in ("from", "to"):
        if key not in spec:
            raise r.fail(where, f"a check needs {key}:")
    check = Check(r.lines.at(where), r.text(spec["from"], (*where, "from")), r.text(spec["to"], (*where, "to")))
    if "@" in check.source or _endpoint_ok(sc, check.source) or check.source.split("/")[0] not in sc.hosts:
        raise r.fail((*where, "from"), _endpoint_ok(sc, check.source) or "from: must be HOST or HOST/CONTAINER")
    check.proto = r.text(spec.get("proto", "tcp"), (*where, "proto"))
    if check.proto not in PROTOS:
        raise r.fail((*where, "proto"), f"one of {', '.join(PROTOS)}")
    family = spec.get("family", 4)
    if family not in (4, 6) or isinstance(family, bool):
        raise r.fail((*where, "family"), "4 or 6")
    check.family = family
    check.expect = r.text(spec.get("expect", "ok"), (*where, "expect"))
    if check.expect not in ("ok", "blocked"):
        raise r.fail((*where, "expect"), "ok or blocked")
    check.resolve = check.proto == "dns" or r.flag(spec.get("resolve", False), (*where, "resolve"))
    target, port = split_target(check.to)
    if check.resolve:
        if "/" not in check.source:
            raise r.fail((*where, "from"), "a name is resolved by a container's DNS server: from: HOST/CONTAINER")
        if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", target):
            raise r.fail((*where, "to"), f"{target!r} is not a DNS name")
        if "published" in spec:
            raise r.fail((*where, "published"), "published: needs a host in to:, not a name")
        if check.proto == "dns":
            if port:
                raise r.fail((*where, "to"), "proto: dns takes a name, no port")
            return check
    elif why := _endpoint_ok(sc, target):
        raise r.fail((*where, "to"), why)
    check.published = r.text(spec["published"], (*where, "published")) if "published" in spec else ""
    if check.published:
        thost, cname = target.split("@")[0], check.published.split("/")[0]
        if port or thost not in sc.hosts or cname not in sc.hosts[thost].containers:
            raise r.fail((*where, "published"), "published: CONTAINER/PORT[/PROTO] of a container on the target "
                                                "host, and no :PORT in to:")
    elif check.proto != "icmp" and not port.isdigit():
        raise r.fail((*where, "to"), f"{check.proto} needs a port: {target}:PORT")
    check.path = r.text(spec.get("path", "/"), (*where, "path"))
    check.body = r.text(spec.get("body", ""), (*where, "body"))
    check.bodies = [r.text(b, (*where, "bodies", i)) for i, b in enumerate(r.seq(spec.get("bodies"), (*where, "bodies")))]
    if (check.body or check.bodies) and check.proto != "http":
        raise r.fail(where, "body/bodies apply to proto: http only")
    return check
