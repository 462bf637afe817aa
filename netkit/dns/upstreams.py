"""The host's upstream resolvers, where names outside a network's records are forwarded.

Read from the host's resolv.conf.  A loopback nameserver (systemd-resolved's 127.0.0.53 stub, a
local dnsmasq) is unreachable from the resolver's point of view as a container sees it, and
forwarding a container's query to the host's stub would answer from the host's own view: like
Docker, the stub's file is replaced by systemd-resolved's list of real upstreams, and loopback
addresses left over are dropped.
"""

from __future__ import annotations

import ipaddress

HOST_RESOLV_CONF = "/etc/resolv.conf"
RESOLVED_UPSTREAMS = "/run/systemd/resolve/resolv.conf"  # systemd-resolved's real upstreams


def nameservers(path: str) -> list[str]:
    """The ``nameserver`` addresses of a resolv.conf (unreadable: none); a v6 zone suffix is dropped."""
    out = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read(1 << 20).splitlines()
    except OSError:
        return []
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                out.append(str(ipaddress.ip_address(words[1].split("%")[0])))
            except ValueError:
                continue
    return out


def _loopback(addr: str) -> bool:
    return ipaddress.ip_address(addr).is_loopback


def host_upstreams(resolv_conf: str = HOST_RESOLV_CONF, resolved: str = RESOLVED_UPSTREAMS) -> list[str]:
    """The upstreams a network's resolver forwards to: the host's, a loopback stub replaced by its own."""
    found = nameservers(resolv_conf)
    if any(_loopback(a) for a in found):
        found = [a for a in found if not _loopback(a)] or nameservers(resolved)
    return [a for a in found if not _loopback(a)]


def parse(spec: str) -> tuple[str, int]:
    """("ADDR", port) of an upstream written "ADDR", "ADDR:PORT" (IPv4) or "[ADDR]:PORT"; ValueError if bad."""
    host, port = spec, 53
    if spec.startswith("["):
        host, bracket, rest = spec[1:].partition("]")
        if not bracket:
            raise ValueError(f"no closing ']' in {spec!r}")
        if rest:
            port = int(rest.removeprefix(":"))
    elif spec.count(":") == 1:
        host, _, p = spec.partition(":")
        port = int(p)
    if not 0 < port < 65536:
        raise ValueError(f"port out of range in {spec!r}")
    return str(ipaddress.ip_address(host)), port
