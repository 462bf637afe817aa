"""A container's /etc/hosts and /etc/resolv.conf, composed from plain values.

The runtime decides what goes in (its addresses, hostname, ``--add-host``, ``--dns``, ``--dns-search``,
``--dns-option``, the address of a network's resolver); this module only checks the user's entries and
writes the text, so whoever knows a value (the flags, the DNS wiring) hands it in as a parameter.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from netkit.runtime.state import ContainerError

HOST_GATEWAY = "host-gateway"  # --add-host NAME:host-gateway, Docker's magic word
_ADD_HOST_FORM = "expected NAME:IP or NAME:host-gateway"
HOST_RESOLV = "/etc/resolv.conf"
# Where systemd-resolved lists the upstreams behind its 127.0.0.53 stub: what Docker reads instead of
# a resolv.conf whose only nameservers are on loopback (unreachable from a container's namespace).
RESOLVED_UPSTREAMS = "/run/systemd/resolve/resolv.conf"
# What Docker writes when the host's resolvers are all on loopback and nothing else is known: an empty
# resolv.conf would send the C library to 127.0.0.1, which answers nothing in the container's namespace.
DEFAULT_NAMESERVERS = ("8.8.8.8", "8.8.4.4")
HOST_HOSTS = "/etc/hosts"
BASE_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


@dataclass(frozen=True)
class ExtraHost:
    """One ``--add-host NAME:ADDRESS`` entry; ``address`` may be HOST_GATEWAY until resolved."""

    name: str
    address: str


@dataclass
class Resolver:
    """What a resolv.conf says: nameservers, search domains, options (in file order)."""

    nameservers: list[str] = field(default_factory=list)
    search: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)


def parse_add_host(spec: str) -> ExtraHost:
    """``NAME:ADDRESS`` (Docker's form; ``NAME=ADDRESS`` too, as newer Docker accepts), the address an
    IPv4 or IPv6 address (``[...]`` brackets allowed) or ``host-gateway``."""
    sep = "=" if "=" in spec else ":"
    name, _, address = spec.partition(sep)
    address = address.strip()
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    if not name or not address or any(c.isspace() for c in name):
        raise ContainerError(f"invalid --add-host {spec!r}", _ADD_HOST_FORM)
    if address != HOST_GATEWAY:
        try:
            address = str(ipaddress.ip_address(address))
        except ValueError:
            raise ContainerError(f"invalid IP address in --add-host {spec!r}", _ADD_HOST_FORM) from None
    return ExtraHost(name, address)


def check_nameserver(value: str) -> str:
    """A --dns value: an IPv4 or IPv6 address, nothing else (a word or a line break would be written
    into resolv.conf as given); Docker's wording for the refusal."""
    shown = value if value.isprintable() else repr(value)  # the error stays one line
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ContainerError(f"{shown} is not an ip address") from None
    if "%" in value:  # a scoped link-local address: the C library's resolv.conf parser takes none
        raise ContainerError(f"{shown} is not an ip address")
    return value


def check_word(kind: str, value: str) -> str:
    """A --dns-search or --dns-option value: one word, no spaces or line breaks (it is one token of a line)."""
    if not value or any(c.isspace() for c in value):
        raise ContainerError(f"invalid {kind} {value!r}", "one word, no spaces")
    return value


def hosts(addresses: list[str], hostname: str, extra: list[ExtraHost], gateway: str = "",
          base: str = BASE_HOSTS) -> str:
    """/etc/hosts: ``base`` (localhost lines, or the host's file in host mode), the container's
    addresses under its hostname, then the extra hosts (``host-gateway`` becomes ``gateway``)."""
    lines = [base if base.endswith("\n") or not base else base + "\n"]
    lines += [f"{a.split('/')[0]}\t{hostname}\n" for a in addresses]
    for entry in extra:
        address = entry.address
        if address == HOST_GATEWAY:
            if not gateway:
                raise ContainerError(f"--add-host {entry.name}:{HOST_GATEWAY}: the container has no gateway "
                                     "to the host", "host-gateway needs a bridge network")
            address = gateway
        lines.append(f"{address}\t{entry.name}\n")
    return "".join(lines)


def parse_resolv(text: str) -> Resolver:
    """The nameservers, search domains and options of a resolv.conf's text (the last search line wins,
    as in the C library)."""
    out = Resolver()
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(words) < 2:
            continue
        if words[0] == "nameserver":
            out.nameservers.append(words[1])
        elif words[0] in ("search", "domain"):
            out.search = words[1:]
        elif words[0] == "options":
            out.options += words[1:]
    return out


def read_text(path: str, default: str = "") -> str:
    """A host file's text (``default`` when it cannot be read: a container still starts)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return default


def _read(path: str) -> Resolver:
    return parse_resolv(read_text(path))


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def host_resolver(own_netns: bool, path: str = HOST_RESOLV, upstreams: str = RESOLVED_UPSTREAMS) -> Resolver:
    """The host's resolver settings as a container sees them.

    In a namespace of its own a loopback nameserver (systemd-resolved's 127.0.0.53) is not the host's:
    such entries are dropped, and when nothing is left the stub's real upstreams are read instead;
    without any (no systemd-resolved, a dnsmasq on 127.0.0.1), Docker's default public resolvers.
    """
    conf = _read(path)
    if not own_netns:
        return conf
    kept = [n for n in conf.nameservers if not _loopback(n)]
    if not kept and conf.nameservers:
        kept = [n for n in _read(upstreams).nameservers if not _loopback(n)] or list(DEFAULT_NAMESERVERS)
    return Resolver(kept, conf.search, conf.options)


def resolv_conf(nameservers: list[str], search: list[str], options: list[str]) -> str:
    """/etc/resolv.conf's text.  A search list of just ``.`` means none (Docker's --dns-search=.)."""
    domains = [] if search == ["."] else [d for d in search if d != "."]
    lines = [f"nameserver {n}\n" for n in nameservers]
    if domains:
        lines.append("search " + " ".join(domains) + "\n")
    if options:
        lines.append("options " + " ".join(options) + "\n")
    return "".join(lines)


def compose_resolver(host: Resolver, nameservers: list[str], search: list[str], options: list[str]) -> Resolver:
    """The container's resolver: each of the three the user (or the network's resolver) gave replaces
    the host's, as with Docker's --dns, --dns-search and --dns-option."""
    return Resolver(list(nameservers) or list(host.nameservers), list(search) or list(host.search),
                    list(options) or list(host.options))
