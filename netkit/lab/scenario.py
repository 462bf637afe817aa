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
PROTOS = ("tcp", "udp", "icmp", "http")
SERVE_KEYS = {"http", "body", "tcp", "udp", "proxy", "backends"}


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


@dataclass
class Container:
    """A container on one host (``netkit run -d``)."""

    name: str
    net: str = "bridge"
    ports: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    serve: dict[str, Any] = field(default_factory=dict)
    ip: str = ""


@dataclass
class Route:
    """A route on one host; ``via`` is an address or a host name (its address on a shared link)."""

    to: ipaddress.IPv4Network
    via: str


@dataclass
class Host:
    """A machine running netkit."""

    name: str
    addresses: dict[str, ipaddress.IPv4Interface] = field(default_factory=dict)  # link name -> address
    networks: dict[str, Network] = field(default_factory=dict)
    containers: dict[str, Container] = field(default_factory=dict)
    routes: list[Route] = field(default_factory=list)


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

    def label(self) -> str:
        """How the check reads in the matrix."""
        target = self.to + (f" [{self.published}]" if self.published else "")
        return f"{self.source} -> {target} {self.proto}"


@dataclass
class Scenario:
    """A whole lab."""

    name: str
    path: str
    description: str = ""
    links: dict[str, Link] = field(default_factory=dict)
    hosts: dict[str, Host] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)

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

    def address_of(self, host: str, from_host: str = "", link: str = "") -> str:
        """A host's address: on ``link``, else on a link shared with ``from_host``, else its first."""
        h = self.hosts[host]
        if link:
            return str(h.addresses[link].ip)
        if from_host and from_host in self.hosts:
            for name, iface in h.addresses.items():
                if name in self.hosts[from_host].addresses:
                    return str(iface.ip)
        if not h.addresses:
            raise ScenarioError(f"{self.path}: host {host} has no link, so it has no address")
        return str(next(iter(h.addresses.values())).ip)


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

    def network(self, value: Any, where: tuple[Any, ...]) -> ipaddress.IPv4Network:
        try:
            net = ipaddress.ip_network(self.text(value, where), strict=False)
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None
        if net.version != 4:
            raise self.fail(where, "only IPv4 subnets are supported in scenarios")
        return net


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
    top = r.mapping(doc, (), {"name", "description", "links", "hosts", "checks"})
    default_name = os.path.splitext(os.path.basename(path))[0] if path != "<scenario>" else "lab"
    sc = Scenario(name=r.text(top.get("name", default_name), ("name",), LAB_NAME),
                  path=path, description=str(top.get("description", "") or ""))
    declared = r.mapping(top.get("links"), ("links",))
    for name, spec in declared.items():
        r.text(name, ("links", name), LINK_NAME)
        spec = r.mapping(spec, ("links", name), {"subnet"})
        subnet = r.network(spec["subnet"], ("links", name, "subnet")) if "subnet" in spec else None
        sc.links[name] = Link(name, subnet)  # type: ignore[arg-type] - filled below when automatic
    hosts = r.mapping(top.get("hosts"), ("hosts",))
    if not hosts:
        raise r.fail(("hosts",), "a scenario needs at least one host")
    wanted: dict[str, dict[str, str | None]] = {}
    for name, spec in hosts.items():
        r.text(name, ("hosts", name), HOST_NAME)
        spec = r.mapping(spec, ("hosts", name), {"links", "networks", "containers", "routes"})
        sc.hosts[name] = _host(r, name, spec)
        wanted[name] = _host_links(r, name, spec.get("links"), sc.links)
    _assign_addresses(r, sc, wanted)
    for name, spec in hosts.items():
        for i, route in enumerate(r.seq((spec or {}).get("routes"), ("hosts", name, "routes"))):
            sc.hosts[name].routes.append(_route(r, sc, name, route, ("hosts", name, "routes", i)))
    for i, check in enumerate(r.seq(top.get("checks"), ("checks",))):
        sc.checks.append(_check(r, sc, check, ("checks", i)))
    return sc


def _host(r: _Reader, name: str, spec: dict[str, Any]) -> Host:
    host = Host(name)
    for net, nspec in r.mapping(spec.get("networks"), ("hosts", name, "networks")).items():
        where = ("hosts", name, "networks", net)
        r.text(net, where, CONTAINER_NAME)
        if net in ("bridge", "host", "none", "container"):
            raise r.fail(where, f"{net!r} is a pre-defined network")
        nspec = r.mapping(nspec, where, {"subnet", "isolate", "icc", "internal"})
        subnet = str(r.network(nspec["subnet"], (*where, "subnet"))) if "subnet" in nspec else None
        flags = {}
        for key, default in (("isolate", True), ("icc", True), ("internal", False)):
            value = nspec.get(key, default)
            if not isinstance(value, bool):
                raise r.fail((*where, key), "must be true or false")
            flags[key] = value
        host.networks[net] = Network(net, subnet, **flags)
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
    spec = r.mapping(spec, where, {"net", "ports", "cmd", "serve", "ip"})
    c = Container(name)
    c.net = r.text(spec.get("net", "bridge"), (*where, "net"))
    if c.net not in ("bridge", "host", "none") and not c.net.startswith("container:") and c.net not in host.networks:
        raise r.fail((*where, "net"), f"unknown network {c.net!r} (bridge, host, none, container:NAME "
                                      f"or one of this host's networks)")
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


def _route(r: _Reader, sc: Scenario, host: str, spec: Any, where: tuple[Any, ...]) -> Route:
    spec = r.mapping(spec, where, {"to", "via"})
    if "to" not in spec or "via" not in spec:
        raise r.fail(where, "a route needs to: SUBNET and via: HOST|ADDRESS")
    via = r.text(spec["via"], (*where, "via"))
    if via in sc.hosts:
        if not set(sc.hosts[via].addresses) & set(sc.hosts[host].addresses):
            raise r.fail((*where, "via"), f"host {via} shares no link with {host}")
        via = sc.address_of(via, host)
    else:
        try:
            ipaddress.IPv4Address(via)
        except ValueError:
            raise r.fail((*where, "via"), f"{via!r} is neither a host nor an IPv4 address") from None
    return Route(r.network(spec["to"], (*where, "to")), via)


def _endpoint_ok(sc: Scenario, ref: str) -> str:
    """'' when ``ref`` (HOST, HOST@LINK, HOST/CONTAINER or an address) names something real; else why not."""
    host, _, rest = ref.partition("/")
    host, _, link = host.partition("@")
    if host not in sc.hosts:
        try:
            ipaddress.IPv4Address(ref)
            return ""
        except ValueError:
            return f"unknown host {host!r}"
    if link and link not in sc.hosts[host].addresses:
        return f"host {host} is not on link {link!r}"
    if rest and rest not in sc.hosts[host].containers:
        return f"no container {rest!r} on host {host}"
    return ""


def _check(r: _Reader, sc: Scenario, spec: Any, where: tuple[Any, ...]) -> Check:
    spec = r.mapping(spec, where, {"from", "to", "proto", "expect", "published", "path", "body", "bodies"})
    for key in ("from", "to"):
        if key not in spec:
            raise r.fail(where, f"a check needs {key}:")
    check = Check(r.lines.at(where), r.text(spec["from"], (*where, "from")), r.text(spec["to"], (*where, "to")))
    if "@" in check.source or _endpoint_ok(sc, check.source) or check.source.split("/")[0] not in sc.hosts:
        raise r.fail((*where, "from"), _endpoint_ok(sc, check.source) or "from: must be HOST or HOST/CONTAINER")
    target, _, port = check.to.rpartition(":") if ":" in check.to else (check.to, "", "")
    if why := _endpoint_ok(sc, target):
        raise r.fail((*where, "to"), why)
    check.proto = r.text(spec.get("proto", "tcp"), (*where, "proto"))
    if check.proto not in PROTOS:
        raise r.fail((*where, "proto"), f"one of {', '.join(PROTOS)}")
    check.expect = r.text(spec.get("expect", "ok"), (*where, "expect"))
    if check.expect not in ("ok", "blocked"):
        raise r.fail((*where, "expect"), "ok or blocked")
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
