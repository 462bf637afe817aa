"""A container's resolv.conf and hosts file: their text, and their update on connect / disconnect.

resolv.conf names the container's networks' resolvers (or the host's); the hosts file its addresses on
every network under its hostname, and the ``--add-host`` entries.

netkit-dns answers a container from every network it is on, whichever gateway it asks (see
netkit/dns/scopes.py), so any one of its DNS networks' resolvers would do; resolv.conf names each
of them, the first network's first, as podman names each network's aardvark-dns address: a
resolver that stops answering (its network left) costs a timeout, not every name.

``network connect`` and ``disconnect`` change both while the container runs.  Each is a bind mount
of a file under the root: it is rewritten in place (a new file renamed over it would not be the one
mounted), as Docker rewrites a container's files when it joins a user network.
"""

from __future__ import annotations

import os

from netkit.runtime import etcfiles
from netkit.runtime.root import Root
from netkit.runtime.state import Container, ContainerError

MAX_NAMESERVERS = 3  # the C library reads no more than three (MAXNS)
FILE = "resolv.conf"  # in the container's directory: what /etc/resolv.conf is bound to
HOSTS = "hosts"  # likewise, /etc/hosts


def gateway(ctr: Container) -> str:
    """The host's address on the container's network (its first IPv4 gateway, else any): host-gateway."""
    result = ctr.primary.cni_result if ctr.primary else {}
    gateways = [ip["gateway"] for ip in result.get("ips", []) if ip.get("gateway")]
    return next((g for g in gateways if ":" not in g), gateways[0] if gateways else "")


def hosts(ctr: Container) -> str:
    """The container's hosts file text: localhost, its addresses under its hostname, ``--add-host``'s
    entries; in host mode the host's own file instead of the localhost lines (and no addresses)."""
    own = ctr.net_kind != "host"
    extra = [etcfiles.parse_add_host(spec) for spec in ctr.extra_hosts]
    base = etcfiles.BASE_HOSTS if own else etcfiles.read_text(etcfiles.HOST_HOSTS, etcfiles.BASE_HOSTS)
    return etcfiles.hosts(ctr.addresses if own else [], ctr.hostname, extra, gateway(ctr), base)


def network_resolver(ctr: Container) -> tuple[list[str], list[str]]:
    """(nameservers, search domains) from the DNS results of the container's endpoints, the primary's first."""
    servers: list[str] = []
    search: list[str] = []
    for ep in sorted(ctr.endpoints, key=lambda ep: ep is not ctr.primary):
        dns = (ep.cni_result or {}).get("dns") or {}
        servers += [s for s in dns.get("nameservers", []) if s not in servers]
        search += [d for d in dns.get("search", []) if d not in search]
    return servers[:MAX_NAMESERVERS], search


def resolv_conf(ctr: Container) -> str:
    """The container's resolv.conf text.

    On a DNS network: its networks' resolvers, even with ``--dns`` (they forward the names they do not
    own there, as Docker's embedded DNS does), the networks' domains first in the search list, then
    ``--dns-search`` or the host's.  Otherwise the host's settings (loopback nameservers dropped in a
    namespace of its own), each replaced by ``--dns``, ``--dns-search`` or ``--dns-option`` when given.
    """
    own = ctr.net_kind != "host"
    host = etcfiles.host_resolver(own)
    servers, domains = network_resolver(ctr) if own else ([], [])
    if servers:
        search = [] if ctr.dns_search == ["."] else [*domains, *(ctr.dns_search or host.search)]
        resolver = etcfiles.compose_resolver(host, servers, search or ["."], ctr.dns_options)
    else:
        resolver = etcfiles.compose_resolver(host, ctr.dns, ctr.dns_search, ctr.dns_options)
    return etcfiles.resolv_conf(resolver.nameservers, resolver.search, resolver.options)


def refresh(root: Root, ctr: Container) -> None:
    """Rewrite the resolv.conf and hosts file a container runs with after its networks changed (a file
    it was not given, host mode's, stays absent)."""
    d = root.container_dir(ctr.id)
    _rewrite(os.path.join(d, FILE), resolv_conf(ctr))
    if os.path.exists(os.path.join(d, HOSTS)):
        try:
            text = hosts(ctr)
        except ContainerError:
            return  # --add-host NAME:host-gateway with no network left: the old entries stay
        _rewrite(os.path.join(d, HOSTS), text)


def _rewrite(path: str, text: str) -> None:
    """Replace the content of the bind-mounted file ``path`` in place."""
    try:
        # In place: O_NOFOLLOW, the root's own file only; no O_CREAT, a file not bound stays absent.
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    data = text.encode()
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        # Cut after the write, not before: an empty file in between would send a reader elsewhere;
        # at worst it briefly sees the old text's tail after the new one.
        f.truncate(len(data))
