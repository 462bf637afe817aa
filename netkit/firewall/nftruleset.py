"""The calling thread's nftables ruleset as netkit reads and changes it, with what was read kept for
as long as only netkit's own commits change it.

Reading is what costs: netkit's table grows with every attachment, and every list command makes
libnftables fetch the names of every chain.  So an operation lists only what it may change
(``chains``), and one that can skip a reading makes a ``Memory``: it reads the ruleset generation
once (``nftgen``), recalls what earlier operations established if nothing but netkit's own commits
happened since (its base chains in place, a network's rules, other tables' forward chains), and
records what this operation learned.  Every change goes through ``run``, which carries what is
known past netkit's own commit.  One record serves the nftables backend and the forward-blocker
readings both backends report (``forward_blockers.py``).
"""

from __future__ import annotations

from typing import Any

from netkit import errors
from netkit.firewall import nftgen
from netkit.firewall.libnft import Nft, NftError

TABLE = "netkit"
FAMILY = "inet"

# What netkit read of each namespace's ruleset (keys "forward blockers", "base", "network NK-N-..."),
# kept while only netkit's own commits change it; an agent answers for many namespaces at once.  No
# commit of netkit's undoes one: base chains and network rules are only ever (re)written whole, and
# only group chains and their jumps are removed.
_facts = nftgen.Facts()


def run(commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run ``commands`` as one atomic batch and return the output objects; a batch that changes
    anything carries what is known past this commit of netkit's own."""
    before = _facts.before_commit() if any("list" not in c for c in commands) else None
    try:
        with Nft() as nft:
            return nft.run(commands)
    except NftError as exc:
        raise errors.CNIError(errors.KERNEL, "nftables refused the change", str(exc)) from None
    finally:
        if before is not None:
            _facts.after_commit(before)


class Memory:
    """What earlier operations read of the calling thread's ruleset and still holds, and what this
    operation learns.  Made before the reading it may spare: it reads the generation then."""

    def __init__(self) -> None:
        self._at, self._known = _facts.recall()

    def known(self, key: str) -> Any:
        """What an earlier reading recorded as ``key``, if nothing but netkit's commits changed
        the ruleset since (else None)."""
        return self._known.get(key)

    def learned(self, key: str, value: Any) -> None:
        """Record ``value`` as ``key``: read by this operation, after its generation was read (a
        change made in between leaves the record unusable, never wrong)."""
        _facts.remember(self._at, key, value)


def chains(names: set[str], sets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The chains of netkit's table named in ``names`` that exist, with their rules, and its sets
    named in ``sets``: the table minus what the operation does not touch.

    The whole table grows with every attachment (a JSON text of megabytes at 500); an ADD reads
    only what it may change.  Each list command still makes libnftables fetch the names of every
    chain (~0.6 ms more per command at 500 attachments).
    """
    out: list[dict[str, Any]] = []
    # One command per run: libnftables refuses a batch of several list commands.
    cmds = [{"list": {"chain": {"family": FAMILY, "table": TABLE, "name": n}}} for n in sorted(names)]
    cmds += [{"list": {"set": {"family": FAMILY, "table": TABLE, "name": n}}} for n in sets]
    try:
        with Nft() as nft:
            for cmd in cmds:
                try:
                    out += [o for o in nft.run([cmd]) if "chain" in o or "rule" in o or "set" in o]
                except NftError:
                    continue  # absent (or gone meanwhile): as if absent
    except NftError as exc:
        raise errors.CNIError(errors.KERNEL, "nftables refused the change", str(exc)) from None
    return out


def table(family: str = FAMILY, name: str = TABLE) -> list[dict[str, Any]]:
    """A whole table, listed ([] when there is none yet)."""
    try:
        return run([{"list": {"table": {"family": family, "name": name}}}])
    except errors.CNIError:
        return []
