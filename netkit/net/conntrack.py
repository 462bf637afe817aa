"""Dropping stale conntrack entries, so a UDP "connection" follows a new or removed port mapping.

A UDP flow that started before a DNAT rule existed (or towards a container now gone) keeps its
conntrack entry, and with it its old translation, for as long as packets keep coming: the reference
portmap blackholes such traffic after DEL.  Deleting the entries whose original destination port
is the published one makes the next packet go through NAT again.
"""

from __future__ import annotations

import socket

from netkit import errors
from netkit.net import netlink  # noqa: F401 - registers pyroute2 without its heavy __init__

UDP = socket.IPPROTO_UDP


def flush_udp(host_ports: set[int]) -> int:
    """Delete UDP conntrack entries whose original destination port is in ``host_ports``."""
    if not host_ports:
        return 0
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple, NFCTSocket

    deleted = 0
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            with NFCTSocket(nfgen_family=family) as ct:
                # Read the whole dump before deleting: a request in the middle of a dump breaks it.
                tuples = [NFCTAttrTuple.from_netlink(family, msg.get_attr("CTA_TUPLE_ORIG")) for msg in ct.dump()]
                for orig in tuples:
                    if orig.proto == UDP and orig.dport in host_ports:
                        try:
                            ct.entry("del", tuple_orig=orig)
                            deleted += 1
                        except netlink.NetlinkError:
                            pass  # expired meanwhile
        except netlink.NetlinkError as exc:
            raise errors.CNIError(errors.KERNEL, "failed to flush conntrack entries", str(exc)) from None
    return deleted
