"""The legacy iptables backend: the nftables backend's layout, in the xtables ``nat`` tables (IPv4's
and IPv6's).

Layout (chain names and rule comments are exactly those of the nftables backend, so CHECK, GC and
conflict detection read both alike):

    raw PREROUTING     -j NETKIT-LOCALNET  (first; with published ports)  ! -i lo -d 127.0.0.0/8 -j DROP
    nat PREROUTING     -m addrtype --dst-type LOCAL -j NETKIT-HOSTPORTS     (exactly once)
    nat OUTPUT         -m addrtype --dst-type LOCAL -j NETKIT-HOSTPORTS     (exactly once)
    nat POSTROUTING    -j NETKIT-MASQ                                       (exactly once)
    NETKIT-HOSTPORTS   -j NK-D-...                      per attachment with published ports
    NETKIT-MASQ        -s <container> -j NK-M-...       per ipMasq attachment,
                       -m conntrack --ctstate DNAT -j NK-D-...-S   per attachment with published ports

iptables has no ``ct status dnat`` match (``--ctstatus`` knows only EXPECTED, SEEN_REPLY, ASSURED,
CONFIRMED); the equivalent is the conntrack match's virtual state ``--ctstate DNAT`` (the original
destination differs from the reply source).

Both families: IPv4 in iptables, IPv6 in ip6tables, each with its own rules of the same layout
and comments (``IptablesFamily``).  The IPv6 half runs in a child process (``iptables6.py``:
python-iptables serves one family per process), only for groups with an IPv6 address, networks
with an IPv6 subnet, and namespaces that have ip6tables tables; an IPv4-only host never starts it.
In IPv6 the raw 127/8 guard has no counterpart (nothing routes ::1 off the loopback), and [::1] is
never DNAT'd (``plugins/proxy6.py`` serves it).

The legacy FORWARD chain is in the same tables netkit writes, so instead of reporting it
(``forward_blockers``), ``apply`` lets the attachment's own traffic through when filter FORWARD
drops by default (``Session.forward_drops``): its policy is DROP (Docker's), or an unconditional
DROP or REJECT rule decides what nothing accepted before it (RHEL's iptables-services, firewalld's
iptables backend, a chain of one's own that FORWARD jumps to).  A ``NETKIT-FORWARD`` chain jumped
from the top of FORWARD (after netkit's isolation) then gets accept rules for the container
address (published ports: DNAT'd flows in, replies out; ipMasq: outbound and its replies),
commented ``<group chain>/<what>/<address>`` and removed with the group; a node's group (``sources``:
its pod subnet) also accepts new connections from the cluster CIDR to that subnet.  A FORWARD that accepts by
default gets none: a conditional DROP there is the admin's deliberate filter, not a default, and
stays in force.  What this backend cannot let through is another stack's drop: an nft base forward
chain whose policy drops (Docker on iptables-nft) - ``forward_blockers`` reports those.
Known limit: the accepts are made at ADD, so a FORWARD turned to drop after an attachment's ADD
(another firewall started later) drops that attachment's traffic until its next ADD.

Each operation is one session on the tables (``iptables_session.py``: edited in memory, committed
per table, earlier tables put back if a later commit fails).  The base-chain jumps and the NETKIT-*
chains are infrastructure and stay, even empty, as the nftables backend's base chains do.
python-iptables itself is imported on first use (``iptc_loader.py``).
"""

from __future__ import annotations

import ipaddress
from typing import Any, ContextManager

from netkit import errors
from netkit.firewall import forward_blockers, iptables6, iptables_session, xtables
from netkit.firewall.iptables_session import Session, Spec
from netkit.firewall.model import DNAT, MASQ, NetworkRules, RuleGroup
from netkit.net import sysctl

HOSTPORTS = "NETKIT-HOSTPORTS"
MASQUERADE = "NETKIT-MASQ"
FORWARD = "NETKIT-FORWARD"
ISOLATION = "NETKIT-ISOLATION"
ISOLATION2 = "NETKIT-ISOLATION-2"
# raw PREROUTING, before any DNAT: nothing from outside may address 127/8.  A port published on
# 127.0.0.1 is DNAT'd before the kernel's martian check, and the bridge's route_localnet (set for
# that hairpin) would let containers reach the host's loopback-only services (CVE-2020-8558's class).
LOCALNET = "NETKIT-LOCALNET"
# Jumped to from the base chains and never deleted: a failed commit's rollback empties them only.
_INFRA = frozenset((HOSTPORTS, MASQUERADE, FORWARD, ISOLATION, ISOLATION2))
_MULTICAST = {4: "224.0.0.0/4", 6: "ff00::/8"}
_LOOPBACK = {4: ("127.0.0.0/8",)}  # IPv6: ::1 is never DNAT'd

_LOCALNET_GUARD = Spec("netkit/localnet", "DROP", dst="127.0.0.0/8", iif="!lo")


# (base chain, match destination type LOCAL, infra chain): the jumps that must exist exactly once.
_BASE_JUMPS = (("PREROUTING", True, HOSTPORTS), ("OUTPUT", True, HOSTPORTS), ("POSTROUTING", False, MASQUERADE))
# The snapshot of the table committed last: a snapshot is only restored when a later commit
# fails, and copying every attachment's jump rules out of nat cost seconds at 500 attachments.
_LAST: dict[int, iptables_session.Snapshot] = {4: {}, 6: {}}


def of_family(group: RuleGroup, version: int) -> RuleGroup:
    """The group with only its addresses of IP ``version`` (each family has its own tables)."""
    return group._replace(addresses=[a for a in group.addresses if a.version == version],
                          sources=[s for v, s in group.masq_sources() if v == version] if group.sources else [])


def _dnat_rules(group: RuleGroup, version: int) -> list[Spec]:
    out = []
    target = group.addresses[-1] if group.addresses else None  # the last one, as the nftables backend picks
    for m in group.mappings:
        if target is None or version not in m.versions:
            continue
        to = f"{target.ip}:{m.container_port}" if version == 4 else f"[{target.ip}]:{m.container_port}"
        # IPv6: never [::1] (the nftables backend's _dnat_rules says why; plugins/proxy6.py serves it).
        dst = m.host_ip if not m.any_address else ("!::1" if version == 6 else "")
        if m.host_ip == "::1":  # the proxy's alone: a rule changing nothing, for its comment
            out.append(Spec(m.label(), "RETURN", dst=dst, proto=m.protocol, dport=m.host_port))
        else:
            out.append(Spec(m.label(), "DNAT", dst=dst, proto=m.protocol, dport=m.host_port, to=to))
    return out


def _snat_rules(group: RuleGroup) -> list[Spec]:
    out = []
    for addr in group.addresses:
        ip = str(addr.ip)
        if group.masq_all:
            out.append(Spec(f"masq-all/{ip}", "MASQUERADE", dst=ip, ctstate="DNAT"))
        elif group.snat:
            # Hairpin and same-bridge clients (replies would bypass the host) and host-local
            # clients using 127.0.0.1 (the container cannot answer a loopback source).
            for src in (str(addr.network), *_LOOPBACK.get(addr.version, ())):
                out.append(Spec(f"snat/{src}->{ip}", "MASQUERADE", src=src, dst=ip, ctstate="DNAT"))
    return out


def _masq_rules(group: RuleGroup) -> list[Spec]:
    out = []
    for addr in group.addresses:
        for dst in (str(addr.network), _MULTICAST[addr.version]):
            out.append(Spec(f"keep/{dst}", "RETURN", dst=dst))
        out.append(Spec(f"masq/{addr.ip}", "MASQUERADE"))
    return out


def _expected(group: RuleGroup, version: int) -> dict[str, list[Spec]]:
    """Chain -> its rules, in the nftables backend's order (``group`` already of one family)."""
    if group.kind == MASQ:
        return {group.chain: _masq_rules(group)}
    return {group.chain: _dnat_rules(group, version), group.chain + "-S": _snat_rules(group)}


def _jumps(group: RuleGroup) -> list[tuple[str, Spec]]:
    """(infra chain, jump rule) for each chain of the group."""
    if group.kind == MASQ:
        return [(MASQUERADE, Spec(group.chain, group.chain, src=src)) for _, src in group.masq_sources()]
    return [(HOSTPORTS, Spec(group.chain, group.chain)),
            (MASQUERADE, Spec(group.chain + "-S", group.chain + "-S", ctstate="DNAT"))]


def _accepts(group: RuleGroup) -> list[Spec]:
    """NETKIT-FORWARD rules letting the attachment's traffic past a FORWARD that drops by default."""
    out = []
    tag = group.chain
    if group.kind == MASQ:
        for _, src in group.masq_sources():
            out += [Spec(f"{tag}/out/{src}", "ACCEPT", src=src),
                    Spec(f"{tag}/in/{src}", "ACCEPT", dst=src, ctstate="RELATED,ESTABLISHED")]
        if group.sources:
            # A node's pod subnet: pods of other nodes (the cluster CIDR, the addresses' networks,
            # kept unmasqueraded) open connections to it too, not only replies.
            for addr in group.addresses:
                out += [Spec(f"{tag}/cluster/{src}", "ACCEPT", src=str(addr.network), dst=src)
                        for v, src in group.masq_sources() if v == addr.version]
        return out
    for addr in group.addresses:
        ip = str(addr.ip)
        if group.kind == DNAT and group.mappings:
            out += [Spec(f"{tag}/dnat/{ip}", "ACCEPT", dst=ip, ctstate="DNAT"),
                    Spec(f"{tag}/reply/{ip}", "ACCEPT", src=ip, ctstate="RELATED,ESTABLISHED")]
    return out


def _accept_owner(comment: str) -> str:
    """The group chain an accept rule belongs to (its comment's first field)."""
    return comment.split("/", 1)[0]


# --- netkit's chains in the tables ---------------------------------------------------------------


def _session(version: int) -> ContextManager[Session]:
    """One operation on the tables of IP ``version``, whose rollback keeps netkit's infrastructure chains."""
    return iptables_session.session(keep=_INFRA, version=version)


def _group_chains(table: Any) -> list[str]:
    return [c.name for c in table.chains if c.name.startswith("NK-")]


def _localnet_guard_in_place(s: Session) -> bool:
    """True when raw PREROUTING starts with netkit's jump to the 127/8 guard, and the guard is whole."""
    if not s.exists("raw"):
        return False
    raw = s.table("raw")
    if not raw.is_chain(LOCALNET) or [s.comment(r) for r in s.rules(raw, LOCALNET)] != ["netkit/localnet"]:
        return False
    first = s.rules(raw, "PREROUTING")[:1]
    return bool(first) and s.target(first[0]) == LOCALNET and s.comment(first[0]) == "netkit"


def _drop_group(s: Session, nat: Any, chains: set[str]) -> bool:
    """Remove these group chains and the jumps to them; True if anything was there."""
    present = sorted(c for c in chains if nat.is_chain(c))
    if not present:
        return False  # and no jump to them either: iptables refuses a jump to a missing chain
    for parent in (HOSTPORTS, MASQUERADE):
        if nat.is_chain(parent):
            s.delete_jumps(nat, parent, set(present))
    for chain in present:
        nat.flush_entries(chain)
        nat.delete_chain(chain)
    return True


def _drop_accepts(s: Session, filt: Any, chains: set[str]) -> bool:
    """Remove the groups' accept rules from NETKIT-FORWARD; True if there were any."""
    changed = False
    if filt.is_chain(FORWARD):
        for rule in s.rules(filt, FORWARD):
            if _accept_owner(s.comment(rule)) in chains:
                s.ipt.Chain(filt, FORWARD).delete_rule(rule)
                changed = True
    return changed


class IptablesFamily:
    """Rules of one IP version in the legacy xtables tables (iptables, or ip6tables for 6), through
    python-iptables (libiptc), in this process."""

    def __init__(self, version: int = 4) -> None:
        self.version = version

    def apply(self, group: RuleGroup) -> None:
        """Install (or replace) the group: built in memory, committed per table, undone on failure."""
        group = of_family(group, self.version)
        expected = _expected(group, self.version)
        chains = set(expected)
        accepts = _accepts(group)
        with _session(self.version) as s:
            touched = []
            # filter first: were the nat commit to fail as well as the rollback, a stray accept
            # would be harmless.
            if s.exists("filter"):  # absent, its FORWARD policy is ACCEPT and it holds no accepts
                filt = s.table("filter")
                snap = s.snapshot(filt, [FORWARD])
                changed = _drop_accepts(s, filt, chains)
                if accepts and s.forward_drops(filt) is not None:
                    s.ensure_chain(filt, FORWARD)
                    # Right after the isolation jump: accepting the container's traffic must not
                    # let it past isolation.
                    isolation = s.jump_index(filt, "FORWARD", ISOLATION)
                    s.ensure_jump(filt, "FORWARD", Spec("netkit", FORWARD), 0 if isolation is None else isolation + 1)
                    s.append(filt, FORWARD, accepts)
                    changed = True
                if changed:
                    touched.append((filt, snap))

            # IPv6 needs no guard: nothing routes ::1 off the loopback (no route_localnet there).
            if self.version == 4 and group.kind == DNAT and group.mappings and not _localnet_guard_in_place(s):
                raw = s.table("raw")
                raw_snap = s.snapshot(raw, [LOCALNET])
                s.ensure_chain(raw, LOCALNET)
                raw.flush_entries(LOCALNET)
                s.append(raw, LOCALNET, [_LOCALNET_GUARD])
                s.ensure_jump(raw, "PREROUTING", Spec("netkit", LOCALNET), 0)
                touched.append((raw, raw_snap))

            nat = s.table("nat")
            _drop_group(s, nat, chains)
            for infra in (HOSTPORTS, MASQUERADE):
                s.ensure_chain(nat, infra)
            for base, local, infra in _BASE_JUMPS:
                s.ensure_jump(nat, base, Spec("netkit", infra, local=local))
            for chain, specs in expected.items():
                nat.create_chain(chain)
                s.append(nat, chain, specs)
            for parent, spec in _jumps(group):
                s.append(nat, parent, [spec])
            touched.append((nat, _LAST[self.version]))
            s.commit(touched)

    def apply_network(self, net: NetworkRules) -> None:
        """Install (or replace) the network's isolation and icc rules in filter FORWARD.

        Docker's two stages: NETKIT-ISOLATION sends traffic entering from a netkit bridge (not a
        reply, not DNAT'd) to the network's chain, which sends what leaves by another interface to
        NETKIT-ISOLATION-2, which drops it if that interface is another netkit bridge.  An internal
        network's chain also gets what enters its bridge from elsewhere, and drops both directions.
        """
        versions = {ipaddress.ip_network(s, strict=False).version for s in net.subnets} or {4}
        if not net.icc and not all(sysctl.br_netfilter_active(v) for v in versions):
            raise errors.CNIError(errors.INVALID_CONFIG, "icc=false with the iptables backend needs br_netfilter",
                                  "load br_netfilter (net.bridge.bridge-nf-call-iptables=1, and "
                                  "bridge-nf-call-ip6tables=1 for an IPv6 subnet) or use nftables")
        with _session(self.version) as s:
            filt = s.table("filter")
            snap = s.snapshot(filt, [ISOLATION, ISOLATION2, net.chain])
            for chain in (ISOLATION, ISOLATION2):
                s.ensure_chain(filt, chain)
            others = [r for r in s.rules(filt, ISOLATION)
                      if s.target(r).startswith("NK-N-") and s.target(r) != net.chain]
            filt.flush_entries(ISOLATION)
            s.append(filt, ISOLATION, [Spec("netkit/replies", "RETURN", ctstate="RELATED,ESTABLISHED"),
                                       Spec("netkit/published", "RETURN", ctstate="DNAT")])
            for rule in others:
                s.ipt.Chain(filt, ISOLATION).append_rule(rule)
            if f"bridge/{net.bridge}" not in {s.comment(r) for r in s.rules(filt, ISOLATION2)}:
                s.append(filt, ISOLATION2, [Spec(f"bridge/{net.bridge}", "DROP", oif=net.bridge)])
            specs = []
            if net.isolate:
                specs.append(Spec(f"isolate/{net.bridge}", ISOLATION2, oif="!" + net.bridge))
            if net.internal:  # nothing forwarded between the bridge and any other interface, either way
                specs += [Spec(f"internal/{net.bridge}", "DROP", oif="!" + net.bridge),
                          Spec(f"internal-in/{net.bridge}", "DROP", iif="!" + net.bridge)]
            if not net.icc:
                specs.append(Spec(f"no-icc/{net.bridge}", "DROP", oif=net.bridge))
            if filt.is_chain(net.chain):
                filt.flush_entries(net.chain)
                filt.delete_chain(net.chain)
            if specs:
                filt.create_chain(net.chain)
                s.append(filt, net.chain, specs)
                s.append(filt, ISOLATION, [Spec(net.chain, net.chain, iif=net.bridge)]
                         + ([Spec(net.chain, net.chain, oif=net.bridge)] if net.internal else []))
            s.ensure_jump(filt, "FORWARD", Spec("netkit-isolation", ISOLATION), 0)
            s.commit([(filt, snap)])

    def sync_networks(self, networks: list[NetworkRules]) -> None:
        """Install the rules of those ``networks`` (read from the other family) that have none here."""
        with _session(self.version) as s:
            filt = s.table("filter") if s.exists("filter") else None
            missing = [n for n in networks if filt is None or not filt.is_chain(n.chain)]
        for net in missing:
            self.apply_network(net)

    def networks(self) -> list[NetworkRules]:
        """The networks whose isolation, internal or icc rules are in filter, read back from them
        (chain and bridge; subnets unknown)."""
        with _session(self.version) as s:
            if not s.exists("filter"):
                return []
            filt = s.table("filter")
            if not filt.is_chain(ISOLATION):
                return []
            out = []
            chains = {s.target(r) for r in s.rules(filt, ISOLATION) if s.target(r).startswith("NK-N-")}
            for chain in sorted(c for c in chains if filt.is_chain(c)):
                kinds = dict(s.comment(r).partition("/")[::2] for r in s.rules(filt, chain))
                bridge = next(iter(kinds.values()), "")
                if bridge:
                    out.append(NetworkRules("", bridge, isolate="isolate" in kinds, icc="no-icc" not in kinds,
                                            internal="internal" in kinds, chain_name=chain))
            return out

    def remove_chains(self, chains: set[str]) -> None:
        """Remove these group chains, the jumps to them and their accept rules; absent ones are fine."""
        with _session(self.version) as s:
            touched = []
            if s.exists("filter"):
                filt = s.table("filter")
                snap = s.snapshot(filt, [FORWARD])
                if _drop_accepts(s, filt, chains):
                    touched.append((filt, snap))
            if s.exists("nat"):
                nat = s.table("nat")
                if _drop_group(s, nat, chains):
                    touched.append((nat, _LAST[self.version]))
            s.commit(touched)

    def chains(self) -> set[str]:
        """Names of every group present: its nat chains, or only its accept rules in filter.

        Accept rules alone are what a process killed between the filter and the nat commit
        leaves; GC must see their group to remove them.
        """
        with _session(self.version) as s:
            out = set(_group_chains(s.table("nat"))) if s.exists("nat") else set()
            if s.exists("filter"):
                filt = s.table("filter")
                if filt.is_chain(FORWARD):
                    out |= {owner for owner in (_accept_owner(s.comment(r)) for r in s.rules(filt, FORWARD))
                            if owner.startswith("NK-")}
            return out

    def rule_comments(self) -> dict[str, list[str]]:
        """Group chain -> the comments of its rules, in order."""
        with _session(self.version) as s:
            if not s.exists("nat"):
                return {}
            nat = s.table("nat")
            return {chain: [s.comment(r) for r in s.rules(nat, chain)] for chain in _group_chains(nat)}

    def group_comments(self, chain: str) -> list[str] | None:
        """Comments of one group chain's rules, or None if the chain is absent."""
        with _session(self.version) as s:
            if not s.exists("nat"):
                return None
            nat = s.table("nat")
            return [s.comment(r) for r in s.rules(nat, chain)] if nat.is_chain(chain) else None

    def expected_comments(self, group: RuleGroup) -> dict[str, list[str]]:
        """What rule_comments() shows for the group's rules of this family once applied."""
        group = of_family(group, self.version)
        return {chain: [spec.comment for spec in specs] for chain, specs in _expected(group, self.version).items()}


def _v6_tables() -> bool:
    """True when this namespace has ip6tables tables netkit's rules could be in (a file read: no
    IPv6 half to start for a host that never had any)."""
    return xtables.exists("nat", 6) or xtables.exists("filter", 6)


def _ipv6_in_play() -> bool:
    """True when IPv6 may be forwarded here: ip6tables tables exist or IPv6 forwarding is on."""
    return _v6_tables() or sysctl.read("net/ipv6/conf/all/forwarding") == "1"


class IptablesBackend:
    """Rules in the legacy xtables tables: IPv4 through python-iptables in this process, IPv6 the
    same way in a child process (``iptables6.py`` says why), only where IPv6 is involved."""

    name = "iptables"

    def __init__(self) -> None:
        self.v4 = IptablesFamily(4)

    def apply(self, group: RuleGroup) -> None:
        """Install (or replace) the group in each family's tables it has addresses of (IPv4 always,
        as before dual stack: its chains are what GC and CHECK find); IPv4 first, taken back if
        IPv6 fails."""
        self.v4.apply(group)
        if any(a.version == 6 for a in group.addresses):
            try:
                iptables6.call("apply", group)
            except BaseException:
                self.v4.remove_chains(set(_expected(of_family(group, 4), 4)))
                raise

    def apply_network(self, net: NetworkRules) -> None:
        """Install (or replace) the network's isolation and icc rules, in ip6tables too when the
        network has an IPv6 subnet or IPv6 may be forwarded at all.

        An IPv4-only network is not safe from IPv6: once a dual-stack network turned IPv6
        forwarding on, a container can give itself an IPv6 address and route through its bridge's
        link-local address; without ip6tables rules an isolated or internal network would leak.
        (The nftables backend's inet table covers both families with one rule.)  Networks set up
        before IPv6 came into play get their ip6tables rules when it does (``sync_networks``)."""
        self.v4.apply_network(net)
        if any(ipaddress.ip_network(s, strict=False).version == 6 for s in net.subnets) or _ipv6_in_play():
            iptables6.call("apply_network", net)
            iptables6.call("sync_networks", self.v4.networks())

    def remove_chains(self, chains: set[str]) -> None:
        """Remove these group chains, the jumps to them and their accept rules in both families."""
        self.v4.remove_chains(chains)
        if _v6_tables():
            iptables6.call("remove_chains", chains)

    def chains(self) -> set[str]:
        """Every group present in either family."""
        return self.v4.chains() | (set(iptables6.call("chains")) if _v6_tables() else set())

    def rule_comments(self) -> dict[str, list[str]]:
        """Group chain -> the comments of its rules, IPv4's then IPv6's."""
        out = self.v4.rule_comments()
        if _v6_tables():
            for chain, comments in iptables6.call("rule_comments").items():
                out[chain] = out.get(chain, []) + comments
        return out

    def group_comments(self, chain: str) -> list[str] | None:
        """Comments of one group chain's rules in both families, or None if absent from both."""
        v4 = self.v4.group_comments(chain)
        v6 = iptables6.call("group_comments", chain) if _v6_tables() else None
        if v4 is None and v6 is None:
            return None
        return (v4 or []) + (v6 or [])

    def expected_comments(self, group: RuleGroup) -> dict[str, list[str]]:
        """What rule_comments() shows for the group once applied: the nftables backend's comments."""
        out = self.v4.expected_comments(group)
        if any(a.version == 6 for a in group.addresses):
            for chain, comments in IptablesFamily(6).expected_comments(group).items():
                out[chain] = out.get(chain, []) + comments
        return out

    def forward_blockers(self, versions: frozenset[int] = frozenset((4, 6))) -> list[str]:
        """nft base forward chains whose policy drops: an accept in the legacy tables does not
        override them.  The legacy FORWARD is not reported: apply() lets the attachment's traffic
        through it (see the module docstring)."""
        return forward_blockers.nft(versions)
