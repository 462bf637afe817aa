"""Which legacy xtables (iptables-legacy) tables exist in the calling thread's network namespace.

Reading a legacy table that is not there creates it (and hooks it into the stack), so both backends
ask this first.  A file read, with nothing imported: the nftables backend asks on every published
port (``forward_blockers.legacy``), and the iptables session module costs ~1 ms to import on top of
an ADD's own imports, python-iptables behind it ~40 ms to load.
"""

from __future__ import annotations

# This thread's namespace, not the process's; IPv4's (iptables) and IPv6's (ip6tables) tables.
_TABLE_NAMES = {4: "/proc/thread-self/net/ip_tables_names", 6: "/proc/thread-self/net/ip6_tables_names"}


def exists(name: str, version: int = 4) -> bool:
    """True if legacy table ``name`` (of IP ``version``) is already there in this thread's namespace."""
    try:
        with open(_TABLE_NAMES[version], encoding="ascii") as f:
            return name in f.read().split()
    except FileNotFoundError:  # ip_tables not loaded: no table anywhere
        return False
