"""Reading the host's routing table: which destinations are already reachable from here."""

from __future__ import annotations

import ipaddress

AF_INET, AF_INET6 = 2, 10
MAIN_TABLE = 254


def host_routes(family: int = AF_INET) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Destinations of the current namespace's main routing table (IPv4, or ``family``), default
    route excluded."""
    # pyroute2 costs ~140 ms to import: only the callers that choose a subnet pay it.
    from netkit.net.netlink import IPRoute

    out = []
    with IPRoute() as ipr:
        for msg in ipr.get_routes(family=family, table=MAIN_TABLE):
            if msg["dst_len"] == 0:
                continue
            out.append(ipaddress.ip_network(f"{msg.get_attr('RTA_DST')}/{msg['dst_len']}", strict=False))
    return out
