"""Applying, checking and collecting rule groups on a backend, with port conflicts detected.

Every change happens under one host-wide lock, so two ADDs asking for the same host port cannot
both pass the conflict check.  The check looks host ports up in an index (firewall/ports.py) and
reads only the rules of the attachments it names, so its cost does not grow with the number of
containers.
"""

from __future__ import annotations

from netkit import errors, fileio, paths
from netkit.firewall import forward_blockers, ports
from netkit.firewall.backend import Backend
from netkit.firewall.model import DNAT, KINDS, NetworkRules, PortMapping, RuleGroup, group_chain, network_prefix

LOCK = f"{paths.RUN_DIR}/firewall.lock"


def _published(backend: Backend) -> dict[str, list[PortMapping]]:
    """Owner chain -> the port mappings it publishes, read back from every rule's comment (O(rules):
    only to index a namespace the first time)."""
    out: dict[str, list[PortMapping]] = {}
    for chain, comments in backend.rule_comments().items():
        if chain.startswith("NK-D-") and not chain.endswith("-S"):
            out[chain] = [m for m in map(ports.parse_label, comments) if m is not None]
    return out


def _clash(backend: Backend, index: ports.PortIndex, group: RuleGroup) -> tuple[PortMapping, PortMapping] | None:
    """A mapping of ``group`` and the one of another attachment that already catches its packets."""
    for mapping in group.mappings:
        for other, owner in index.candidates(mapping):
            if owner == group.chain:
                continue
            comments = backend.group_comments(owner)
            if comments is not None and other.label() in comments:
                return mapping, other
            # Its writer died, or its rules went another way (DEL without the mappings, a flush).
            if comments is None:
                index.remove(owner)
            else:
                index.drop_stale(other, owner)
    return None


def apply(backend: Backend, group: RuleGroup) -> None:
    """Install the group, refusing host ports another attachment already publishes."""
    fileio.ensure_dir(paths.RUN_DIR)
    with fileio.locked(LOCK):
        if group.kind != DNAT or not group.mappings:
            backend.apply(group)
            return
        blockers = backend.forward_blockers(frozenset(a.version for a in group.addresses))
        if blockers:
            # Only the iptables backend can let its traffic through a legacy FORWARD that drops.
            legacy = any(b.startswith((forward_blockers.LEGACY_FORWARD, forward_blockers.LEGACY_FORWARD6))
                         for b in blockers)
            raise errors.CNIError(
                errors.FORWARD_BLOCKED, "forwarded traffic is dropped by another firewall table",
                f"{'; '.join(blockers)} drops forwarded traffic by default: accept traffic to and from "
                f"the container bridge there (e.g. Docker's DOCKER-USER chain)"
                + (", or use firewallBackend=iptables, which lets its attachments through the legacy "
                   "FORWARD" if legacy else ""))
        index = ports.PortIndex()
        if not index.complete:
            index.rebuild(_published(backend))
        clash = _clash(backend, index, group)
        if clash is not None:
            raise errors.CNIError(errors.PORT_ALLOCATED, f"port is already allocated: {clash[0].label()}",
                                  f"another attachment publishes {clash[1].label()}")
        # Indexed before the rules exist: killed in between, the entry is stale (verified away),
        # never missing.
        index.remove(group.chain)
        index.add(group.chain, group.mappings)
        try:
            backend.apply(group)
        except BaseException:
            index.remove(group.chain)
            # A re-ADD that failed leaves the previous rules in place: index what is there.
            index.add(group.chain, [m for m in map(ports.parse_label, backend.group_comments(group.chain) or [])
                                    if m is not None])
            raise


def apply_network(backend: Backend, net: NetworkRules) -> None:
    """Install the network's isolation and icc rules (idempotent)."""
    fileio.ensure_dir(paths.RUN_DIR)
    with fileio.locked(LOCK):
        backend.apply_network(net)


def remove(backend: Backend, kinds: tuple[str, ...], network: str, container_id: str, ifname: str) -> None:
    """Remove the attachment's groups of these kinds, in one change; nothing there is fine."""
    chains = {group_chain(kind, network, container_id, ifname) for kind in kinds}
    fileio.ensure_dir(paths.RUN_DIR)
    with fileio.locked(LOCK):
        # Only a DNAT group has a second ("-S") chain: asking for the others cost a list command each.
        backend.remove_chains(chains | {c + "-S" for c in chains if c.startswith("NK-D-")})
        _forget(chains)


def _forget(chains: set[str]) -> None:
    """Drop the port index's entries of removed chains (after the rules: a crash leaves them stale)."""
    index = ports.PortIndex()
    for chain in chains:
        if chain.startswith("NK-D-"):
            index.remove(chain)


def check(backend: Backend, group: RuleGroup) -> None:
    """Fail unless every rule of the group is in place."""
    for chain, comments in backend.expected_comments(group).items():
        have = backend.group_comments(chain)
        if have is None:
            raise errors.CNIError(errors.CHECK_FAILED, f"firewall chain {chain} is missing")
        if sorted(have) != sorted(comments):
            raise errors.CNIError(errors.CHECK_FAILED, f"firewall rules of {chain} differ",
                                  f"expected {sorted(comments)}, found {sorted(have)}")


def gc(backend: Backend, network: str, valid: set[tuple[str, str]]) -> None:
    """Remove the groups of ``network`` whose attachment is not in ``valid``."""
    keep = set()
    for cid, ifname in valid:
        for kind in KINDS:
            keep |= {group_chain(kind, network, cid, ifname), group_chain(kind, network, cid, ifname) + "-S"}
    prefixes = tuple(network_prefix(kind, network) for kind in KINDS)
    fileio.ensure_dir(paths.RUN_DIR)
    with fileio.locked(LOCK):
        stale = {c for c in backend.chains() if c.startswith(prefixes) and c not in keep}
        if stale:
            backend.remove_chains(stale)
        # Entries whose rules never landed (the writer was killed before its commit) too.
        _forget(stale | {c for c in ports.PortIndex().owners() if c.startswith(prefixes) and c not in keep})
