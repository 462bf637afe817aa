"""A container's resolver as its networks' DNS plugins give it, and its update on connect / disconnect.

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

from netkit.dns import upstreams
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
    """The container's resolv.conf: its networks' resolvers with their domains, else its ``--dns``
    servers; "" when it has neither (it then sees the host's file)."""
    servers, search = network_resolver(ctr)
    if not servers:
        return "".join(f"nameserver {s}\n" for s in ctr.dns)
    return "".join(f"nameserver {s}\n" for s in servers) + (f"search {' '.join(search)}\n" if search else "")


def refresh(root: Root, ctr: Container) -> None:
    """Rewrite the resolv.conf a container runs with after its networks changed (a file it was not
    given at start, the host's, is left alone).  With no resolver and no ``--dns`` left, the host's
    upstreams (loopback stubs replaced, as the resolver forwards to them)."""
    path = os.path.join(root.container_dir(ctr.id), FILE)
    text = resolv_conf(ctr) or "".join(f"nameserver {s}\n" for s in upstreams.host_upstreams())
    try:
        # In place: O_NOFOLLOW, the root's own file only; no O_CREAT, a file not bound stays absent.
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    with os.fdopen(fd, "wb") as f:
        data = text.encode()
        f.write(data)
        f.truncate(len(data))  # after the write: a reader never sees an empty file in between
