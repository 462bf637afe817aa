"""Forward chains outside netkit's control that drop forwarded traffic by default: the readings
behind both backends' ``forward_blockers`` (a published port would be silently dropped there).

An nft base forward chain whose policy drops (Docker on iptables-nft, firewalld) overrides any
accept, whichever backend made it.  The legacy filter FORWARD is applied beside nft too: the
iptables backend lets its attachments through it, the nftables backend can only report it.  Both
backends import this module, so neither imports the other.  Each reading imports what it reads
with on first use: an nftables ADD does not pay for python-iptables, nor an iptables-backend DEL
(which checks no forward chain) for libnftables.
"""

from __future__ import annotations

from netkit import errors
from netkit.firewall import xtables

# How a legacy-table blocker is named in a reading (groups tells it from the nft ones by it).
LEGACY_FORWARD = "legacy iptables filter FORWARD"
LEGACY_FORWARD6 = "legacy ip6tables filter FORWARD"


# The IP versions an nft table family's chains see (bridge and netdev: frames of either).
_FAMILY_VERSIONS = {"ip": {4}, "ip6": {6}}


def nft(versions: frozenset[int] = frozenset((4, 6))) -> list[str]:
    """Base forward chains of nft tables other than netkit's whose policy drops (described): those
    that see packets of the IP ``versions`` (an ``ip`` table never drops IPv6, an ``ip6`` one IPv4).

    Listing every chain costs ~15 ms with 500 attachments (their chains are listed too), so the
    answer is kept, per namespace, for as long as the ruleset generation shows no change other
    than netkit's own commits (see ``nftgen.Facts``).
    """
    from netkit.firewall import nftruleset  # libnftables: imported already on the nftables backend

    memory = nftruleset.Memory()
    found = memory.known("forward blockers")
    if found is None:
        try:
            listing = nftruleset.run([{"list": {"chains": {}}}])
        except errors.CNIError:
            return []
        found = [f"{c['family']} {c['table']} {c['name']}" for c in (o.get("chain") for o in listing) if c
                 and c.get("hook") == "forward" and c.get("policy") == "drop" and c.get("table") != nftruleset.TABLE]
        memory.learned("forward blockers", found)
    # A new list: a caller adding to it must not add to what is kept.
    return [b for b in found if _FAMILY_VERSIONS.get(b.split(" ", 1)[0], {4, 6}) & versions]


def legacy(versions: frozenset[int] = frozenset((4, 6))) -> list[str]:
    """The legacy filter FORWARD chains (iptables, ip6tables: those of ``versions``) of this
    thread's namespace that drop by default (described).

    The legacy tables change outside the nft ruleset generation: they are looked at each time.
    Without a legacy filter table (the usual nft host) that costs one file read and nothing is
    imported; reading an absent table would create it.
    """
    # A host with Docker's ip6tables rules drops IPv6 forwarding only: no reason to refuse an
    # IPv4-only attachment.
    out = legacy6() if 6 in versions else []
    if 4 not in versions or not xtables.exists("filter"):
        return out
    from netkit.firewall import iptables_session  # python-iptables: only where a legacy table is

    with iptables_session.session() as s:
        why = s.forward_drops(s.table("filter"))
    return out if why is None else [f"{LEGACY_FORWARD} ({why})", *out]


def legacy6() -> list[str]:
    """The legacy ip6tables filter FORWARD chain when it drops by default (described), read by the
    iptables backend's IPv6 half in its own process (iptables6.py says why); nothing to read, and
    no process, on a namespace without a legacy ip6tables filter table."""
    if not xtables.exists("filter", 6):
        return []
    from netkit.firewall import iptables6

    why = iptables6.call("forward_drops")
    return [] if why is None else [f"{LEGACY_FORWARD6} ({why})"]
