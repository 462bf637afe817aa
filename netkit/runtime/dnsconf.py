"""A container's resolv.conf: its networks' resolvers (or the host's), and its update on connect / disconnect.

netkit-dns answers a container from every network it is on, whichever gateway it asks (see
netkit/dns/scopes.py), so any one of its DNS networks' resolvers would do; resolv.conf names each
of them, the first network's first, as podman names each network's aardvark-dns address: a
resolver that stops answering (its network left) costs a timeout, not every name.

``network connect`` and ``disconnect`` change that list while the container runs.  Its resolv.conf
is a bind mount of the file under the root: it is rewritten in place (a new file renamed over it
would not be the one mounted), as Docker rewrites a container's resolv.conf when it joins a user
network.
"""

from __future__ import annotations

import os

from netkit.runtime import etcfiles
from netkit.runtime.root import Root
from netkit.runtime.state import Container

MAX_NAMESERVERS = 3  # the C library reads no more than three (MAXNS)
FILE = "resolv.conf"  # in the container's directory: what /etc/resolv.conf is bound to


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
    """Rewrite the resolv.conf a container runs with after its networks changed (nothing when it has
    none of its own: host mode)."""
    path = os.path.join(root.container_dir(ctr.id), FILE)
    try:
        # In place: O_NOFOLLOW, the root's own file only; no O_CREAT, a file not bound stays absent.
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    data = resolv_conf(ctr).encode()
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        # Cut after the write, not before: an empty file in between would send a reader to 127.0.0.1;
        # at worst it briefly sees the old text's tail after the new one.
        f.truncate(len(data))
