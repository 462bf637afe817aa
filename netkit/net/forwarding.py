"""IP forwarding in the calling thread's network namespace, switched on so that it holds.

Routing obeys each interface's own ``forwarding`` value; ``net.ipv4.ip_forward`` (the same value
as ``conf/all/forwarding``) is a switch whose write copies itself to every interface and to
``conf/default`` (the kernel's ``inet_forward_change``).  That copy needs RTNL, and a writer that
finds RTNL taken puts the old value back and restarts its write: a second writer that read the
switch inside that window sees "no change" and returns without copying, and so does the restarted
first one.  The switch then reads 1 while no interface forwards — and stays so, since everyone
who reads it first finds nothing to do.  Measured here: 5 of 60 fresh namespaces left that way by
16 concurrent writers while veths were being created (RTNL busy), 0 of 60 with the writers
serialized.  Sixteen parallel bridge ADDs on a fresh host through the agent are exactly that, and
every port they published went silent from other machines (issue 14).

So netkit's writers take one host-wide lock (only when something is to change), and a switch that
reads 1 while ``conf/default`` reads 0 — the copy that never happened — is written again through 0.
IPv6's switch copies under RTNL before it stores the value, so it only shares the lock.
"""

from __future__ import annotations

from netkit import fileio, paths
from netkit.net import sysctl

LOCK = f"{paths.RUN_DIR}/forwarding.lock"
_IPV4 = "net.ipv4.ip_forward"
_IPV4_DEFAULT = "net.ipv4.conf.default.forwarding"
_IPV6 = "net.ipv6.conf.all.forwarding"


def ipv4_forwarding() -> bool:
    """True when IPv4 forwarding is on and reached the interfaces (the switch and the default)."""
    return sysctl.read(_IPV4) == "1" and sysctl.read(_IPV4_DEFAULT) == "1"


def enable(version: int) -> None:
    """Switch forwarding of IP ``version`` (4 or 6) on, repairing an IPv4 switch whose copy to the
    interfaces was lost."""
    if version == 4 and ipv4_forwarding():
        return
    if version == 6 and sysctl.read(_IPV6) == "1":
        return
    fileio.ensure_dir(paths.RUN_DIR)
    with fileio.locked(LOCK):
        if version == 6:
            sysctl.ensure(_IPV6, "1")
            return
        if sysctl.read(_IPV4) == "1" and sysctl.read(_IPV4_DEFAULT) != "1":
            # Only a write that changes the switch copies it: through 0, which is what the
            # interfaces already do, so nothing that forwarded stops.
            sysctl.write(_IPV4, "0")
        sysctl.ensure(_IPV4, "1")
