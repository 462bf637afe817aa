"""Which legacy xtables (iptables-legacy) tables exist in the calling thread's network namespace.

Reading a legacy table that is not there creates it (and hooks it into the stack), so both backends
ask this first.  A file read, with nothing imported: the nftables backend asks on every published
port (``forward_blockers.legacy``), and the iptables session module costs ~1 ms to import on top of
an ADD's own imports, python-iptables behind it ~40 ms to load.
"""

from __future__ import annotations

_TABLE_NAMES = "/proc/thread-self/net/ip_tables_names"  # this thread's namespace, not the process's


def exists(name: str) -> bool:
    """True if legacy table ``name`` is already there in this thread's namespace."""
    try:
        with open(_TABLE_NAMES, encoding="ascii") as f:
            return name in f.read().split()
    except FileNotFoundError:  # ip_tables not loaded: no table anywhere
        return False
