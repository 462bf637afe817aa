"""Reading the host's routing table: which IPv4 destinations are already reachable from here."""

from __future__ import annotations

import ipaddress

AF_INET = 2
MAIN_TABLE = 254


def host_routes() -> list[ipaddress.IPv4Network]:
    """IPv4 destinations of the current namespace's main routing table, default route excluded."""
    # pyroute2 costs ~140 ms to import: only the callers that choose a subnet pay it.
    from netkit.net.netlink import IPRoute

    out = []
    with IPRoute() as ipr:
        for msg in ipr.get_routes(family=AF_INET, table=MAIN_TABLE):
            if msg["dst_len"] == 0:
                continue
            out.append(ipaddress.ip_network(f"{msg.get_attr('RTA_DST')}/{msg['dst_len']}", strict=False))
    return out
