"""Applying, checking and collecting rule groups on a backend, with port conflicts detected.

Every change happens under one host-wide lock, so two ADDs asking for the same host port cannot
both pass the conflict check.
"""

from __future__ import annotations

from netkit import errors, fileio
from netkit.firewall.backend import Backend
from netkit.firewall.model import DNAT, KINDS, NetworkRules, PortMapping, RuleGroup, group_chain, network_prefix

LOCK_DIR = "/run/netkit"
LOCK = f"{LOCK_DIR}/firewall.lock"


def _published(backend: Backend, except_chain: str) -> list[PortMapping]:
    """Port mappings installed by other attachments (read back from the rule comments)."""
    out = []
    for chain, comments in backend.rule_comments().items():
        if not chain.startswith("NK-D-") or chain.endswith("-S") or chain == except_chain:
            continue
        for label in comments:
            protocol, _, rest = label.partition("/")
            host_ip, _, port = rest.rpartition("/")
            if port.isdigit():
                out.append(PortMapping(int(port), 0, protocol, "" if host_ip == "*" else host_ip))
    return out


def apply(backend: Backend, group: RuleGroup) -> None:
    """Install the group, refusing host ports another attachment already publishes."""
    fileio.ensure_dir(LOCK_DIR)
    with fileio.locked(LOCK):
        if group.kind == DNAT and group.mappings:
            blockers = backend.forward_blockers()
            if blockers:
                raise errors.CNIError(
                    errors.FORWARD_BLOCKED, "forwarded traffic is dropped by another firewall table",
                    f"{'; '.join(blockers)} has policy drop: accept traffic to and from the container "
                    f"bridge there (e.g. Docker's DOCKER-USER chain), or use firewallBackend=iptables on a "
                    f"legacy-iptables host")
            taken = _published(backend, group.chain)
            for mapping in group.mappings:
                clash = next((t for t in taken if t.overlaps(mapping)), None)
                if clash is not None:
                    raise errors.CNIError(errors.PORT_ALLOCATED, f"port is already allocated: {mapping.label()}",
                                          f"another attachment publishes {clash.label()}")
        backend.apply(group)


def apply_network(backend: Backend, net: NetworkRules) -> None:
    """Install the network's isolation and icc rules (idempotent)."""
    fileio.ensure_dir(LOCK_DIR)
    with fileio.locked(LOCK):
        backend.apply_network(net)


def remove(backend: Backend, kinds: tuple[str, ...], network: str, container_id: str, ifname: str) -> None:
    """Remove the attachment's groups of these kinds, in one change; nothing there is fine."""
    chains = {group_chain(kind, network, container_id, ifname) for kind in kinds}
    fileio.ensure_dir(LOCK_DIR)
    with fileio.locked(LOCK):
        backend.remove_chains(chains | {c + "-S" for c in chains})


def check(backend: Backend, group: RuleGroup) -> None:
    """Fail unless every rule of the group is in place."""
    have = backend.rule_comments()
    for chain, comments in backend.expected_comments(group).items():
        if chain not in have:
            raise errors.CNIError(errors.CHECK_FAILED, f"firewall chain {chain} is missing")
        if sorted(have[chain]) != sorted(comments):
            raise errors.CNIError(errors.CHECK_FAILED, f"firewall rules of {chain} differ",
                                  f"expected {sorted(comments)}, found {sorted(have[chain])}")


def gc(backend: Backend, network: str, valid: set[tuple[str, str]]) -> None:
    """Remove the groups of ``network`` whose attachment is not in ``valid``."""
    keep = set()
    for cid, ifname in valid:
        for kind in KINDS:
            keep |= {group_chain(kind, network, cid, ifname), group_chain(kind, network, cid, ifname) + "-S"}
    prefixes = tuple(network_prefix(kind, network) for kind in KINDS)
    fileio.ensure_dir(LOCK_DIR)
    with fileio.locked(LOCK):
        stale = {c for c in backend.chains() if c.startswith(prefixes) and c not in keep}
        if stale:
            backend.remove_chains(stale)
