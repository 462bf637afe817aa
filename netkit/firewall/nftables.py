"""The nftables backend: netkit's own ``inet netkit`` table, one atomic batch per operation.

Layout (base chains are rewritten by any batch that finds them otherwise, so they are always this):

    localnet    (filter, raw prio) iifname != lo, ip daddr 127.0.0.0/8: drop

    prerouting  (nat, dstnat)   fib daddr type local  jump hostports
    output      (nat, dstnat)   fib daddr type local  jump hostports
    postrouting (nat, srcnat)   jump masquerade
    hostports                   one "jump NK-D-..." per attachment with published ports
    masquerade                  "ip saddr <container> jump NK-M-..." per ipMasq attachment,
                                "jump NK-D-...-S" per attachment with published ports

Every rule of a group carries a comment naming what it does, which CHECK compares and conflict
detection reads (``tcp/*/8080``).  Reads and batches go through ``nftruleset``, which remembers
what an operation found (the base chains, a network's rules in place) while only netkit's own
commits change the ruleset.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from netkit import errors
from netkit.firewall import forward_blockers, nftruleset
from netkit.firewall.model import MASQ, NetworkRules, RuleGroup
from netkit.firewall.nftruleset import FAMILY, TABLE
from netkit.net import sysctl

_BASE = {
    "prerouting": ("nat", "prerouting", -100),
    "output": ("nat", "output", -100),
    "postrouting": ("nat", "postrouting", 100),
    "forward": ("filter", "forward", 0),
    "localnet": ("filter", "prerouting", -300),
}
_PARENTS = ("hostports", "masquerade", "isolation")
_MULTICAST = {4: "224.0.0.0/4", 6: "ff00::/8"}
_LOOPBACK = {4: ("127.0.0.0/8",)}


def _proto(version: int) -> str:
    return "ip" if version == 4 else "ip6"


def _match(left: dict[str, Any], right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _addr_match(version: int, field: str, value: str, op: str = "==") -> dict[str, Any]:
    net = ipaddress.ip_network(value, strict=False)
    right: Any = str(net.network_address) if net.prefixlen == net.max_prefixlen else \
        {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}
    return _match({"payload": {"protocol": _proto(version), "field": field}}, right, op)


def _nfproto(version: int) -> dict[str, Any]:
    return _match({"meta": {"key": "nfproto"}}, "ipv4" if version == 4 else "ipv6")


_CT_DNAT = _match({"ct": {"key": "status"}}, "dnat", "in")
_LOCAL = _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")


def _rule(chain: str, expr: list[dict[str, Any]], comment: str) -> dict[str, Any]:
    return {"add": {"rule": {"family": FAMILY, "table": TABLE, "chain": chain, "expr": expr, "comment": comment}}}


def _chain(name: str) -> dict[str, Any]:
    return {"chain": {"family": FAMILY, "table": TABLE, "name": name}}


def _base() -> list[dict[str, Any]]:
    cmds: list[dict[str, Any]] = [{"add": {"table": {"family": FAMILY, "name": TABLE}}}]
    for name, (kind, hook, prio) in _BASE.items():
        cmds.append({"add": {"chain": dict(_chain(name)["chain"], type=kind, hook=hook, prio=prio, policy="accept")}})
    cmds += [{"add": _chain(name)} for name in _PARENTS]
    cmds.append({"add": {"set": {"family": FAMILY, "table": TABLE, "name": "bridges", "type": "ifname"}}})
    for name in _BASE:
        cmds.append({"flush": _chain(name)})
    cmds.append(_rule("prerouting", [_LOCAL, {"jump": {"target": "hostports"}}], "netkit"))
    cmds.append(_rule("output", [_LOCAL, {"jump": {"target": "hostports"}}], "netkit"))
    cmds.append(_rule("postrouting", [{"jump": {"target": "masquerade"}}], "netkit"))
    # Replies, and published ports from anywhere (Docker's rule too), pass isolation.
    cmds.append(_rule("forward", [_match({"ct": {"key": "state"}}, ["established", "related"], "in"),
                                  {"accept": None}], "netkit"))
    cmds.append(_rule("forward", [_CT_DNAT, {"accept": None}], "netkit"))
    cmds.append(_rule("forward", [{"jump": {"target": "isolation"}}], "netkit"))
    # Before any DNAT: nothing from outside may address 127/8.  A port published on 127.0.0.1 is
    # DNAT'd in prerouting, before the kernel's martian check, and the bridges' route_localnet
    # (needed for that hairpin) would let containers reach the host's loopback-only services
    # (kube-proxy's CVE-2020-8558).
    cmds.append(_rule("localnet", [_match(_IFNAME["iif"], "lo", "!="), _addr_match(4, "daddr", "127.0.0.0/8"),
                                   {"drop": None}], "netkit"))
    return cmds


_BASE_RULES = {"prerouting": 1, "output": 1, "postrouting": 1, "forward": 3, "localnet": 1}  # as _base() writes them


def _chain_names(listing: list[dict[str, Any]]) -> set[str]:
    return {o["chain"]["name"] for o in listing if "chain" in o}


def _base_in_place(listing: list[dict[str, Any]]) -> bool:
    """True when the table, base chains, the set and the base rules are all there.

    Rewriting them costs a commit that deletes rules, and such commits wait for the kernel's RCU
    grace period (10-30 ms measured here): an ADD skips it unless something is missing.  The parent
    chains are not listed (hostports and masquerade hold a rule per attachment): the base rules jump
    to all three, and nftables neither accepts a jump to a missing chain nor deletes a chain jumped to.
    """
    if not set(_BASE) <= _chain_names(listing) or not any(o.get("set", {}).get("name") == "bridges" for o in listing):
        return False
    counts: dict[str, int] = {}
    for o in listing:
        rule = o.get("rule")
        if rule and rule["chain"] in _BASE:
            if rule.get("comment") != "netkit":
                return False
            counts[rule["chain"]] = counts.get(rule["chain"], 0) + 1
    return counts == _BASE_RULES


def _read(memory: nftruleset.Memory, chains: set[str]) -> list[dict[str, Any]]:
    """The chains of ``chains`` that exist, with their rules, and the base chains and the bridges
    set unless an earlier reading found them in place (then skipped: each list command costs)."""
    if memory.known("base"):
        return nftruleset.chains(chains)
    return nftruleset.chains(chains | set(_BASE), sets=("bridges",))


def _base_ready(memory: nftruleset.Memory, listing: list[dict[str, Any]]) -> bool:
    """True when the base chains need no rewriting: known in place, or found so in ``listing``
    (then remembered)."""
    if memory.known("base"):
        return True
    if _base_in_place(listing):
        memory.learned("base", True)
        return True
    return False


def _comments(listing: list[dict[str, Any]], chain: str) -> list[str]:
    return [o["rule"].get("comment", "") for o in listing if "rule" in o and o["rule"]["chain"] == chain]


_IFNAME = {"iif": {"meta": {"key": "iifname"}}, "oif": {"meta": {"key": "oifname"}}}
# Frames switched between two ports of one bridge never reach the inet forward hook (without
# br_netfilter): icc=false is enforced in a bridge-family table.
_BRIDGE_TABLE = {"family": "bridge", "name": TABLE}


def _dnat_rules(chain: str, group: RuleGroup) -> list[dict[str, Any]]:
    out = []
    by_version = {a.version: a for a in group.addresses}
    for m in group.mappings:
        for version in m.versions:
            target = by_version.get(version)
            if target is None:
                continue
            expr = [_nfproto(version)]
            if not m.any_address:
                expr.append(_addr_match(version, "daddr", m.host_ip))
            elif version == 6:
                # Never [::1]: the replies of a DNAT'd loopback connection come back to ::1 on the
                # bridge, which IPv6 does not route (no route_localnet); [::1] is the proxy's
                # (plugins/proxy6.py).
                expr.append(_addr_match(6, "daddr", "::1", "!="))
            expr += [_match({"meta": {"key": "l4proto"}}, m.protocol),
                     _match({"payload": {"protocol": "th", "field": "dport"}}, m.host_port)]
            # [::1] alone: the proxy serves it; a rule that changes nothing still carries the
            # mapping's comment, so CHECK, GC and conflict detection see the port held.
            verdict = {"return": None} if m.host_ip == "::1" else \
                {"dnat": {"family": _proto(version), "addr": str(target.ip), "port": m.container_port}}
            out.append(_rule(chain, expr + [verdict], m.label()))
    return out


def _snat_rules(chain: str, group: RuleGroup) -> list[dict[str, Any]]:
    out = []
    for addr in group.addresses:
        v = addr.version
        to_container = [_CT_DNAT, _nfproto(v), _addr_match(v, "daddr", str(addr.ip))]
        if group.masq_all:
            out.append(_rule(chain, to_container + [{"masquerade": None}], f"masq-all/{addr.ip}"))
        elif group.snat:
            # Hairpin and same-bridge clients (replies would bypass the host) and host-local
            # clients using 127.0.0.1 (the container cannot answer a loopback source; ::1 is never
            # DNAT'd, see _dnat_rules).
            for src in (str(addr.network), *_LOOPBACK.get(v, ())):
                out.append(_rule(chain, to_container + [_addr_match(v, "saddr", src), {"masquerade": None}],
                                 f"snat/{src}->{addr.ip}"))
    return out


def _masq_rules(chain: str, group: RuleGroup) -> list[dict[str, Any]]:
    out = []
    for addr in group.addresses:
        v = addr.version
        for dst in (str(addr.network), _MULTICAST[v]):
            out.append(_rule(chain, [_nfproto(v), _addr_match(v, "daddr", dst), {"return": None}], f"keep/{dst}"))
        out.append(_rule(chain, [_nfproto(v), {"masquerade": None}], f"masq/{addr.ip}"))
    return out


def _jumps(group: RuleGroup) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(parent chain, child chain, match before the jump) for each chain of the group."""
    if group.kind == MASQ:
        return [("masquerade", group.chain, [_nfproto(v), _addr_match(v, "saddr", src)])
                for v, src in group.masq_sources()]
    return [("hostports", group.chain, []), ("masquerade", group.chain + "-S", [_CT_DNAT])]


def _expected(group: RuleGroup) -> dict[str, list[dict[str, Any]]]:
    """Chain -> its rules, for the group."""
    if group.kind == MASQ:
        return {group.chain: _masq_rules(group.chain, group)}
    return {group.chain: _dnat_rules(group.chain, group), group.chain + "-S": _snat_rules(group.chain + "-S", group)}


class NftablesBackend:
    """Rules in netkit's own nftables table."""

    name = "nftables"

    def _jump_handles(self, listing: list[dict[str, Any]], targets: set[str]) -> list[tuple[str, int]]:
        out = []
        for obj in listing:
            rule = obj.get("rule")
            if not rule or rule.get("chain") not in _PARENTS:
                continue
            for expr in rule.get("expr", []):
                if expr.get("jump", {}).get("target") in targets:
                    out.append((rule["chain"], rule["handle"]))
        return out

    def _removal(self, listing: list[dict[str, Any]], chains: set[str]) -> list[dict[str, Any]]:
        present = _chain_names(listing)
        cmds: list[dict[str, Any]] = [
            {"delete": {"rule": {"family": FAMILY, "table": TABLE, "chain": chain, "handle": handle}}}
            for chain, handle in self._jump_handles(listing, chains)]
        for chain in sorted(chains & present):
            cmds += [{"flush": _chain(chain)}, {"delete": _chain(chain)}]
        return cmds

    def apply(self, group: RuleGroup) -> None:
        """Install (or replace) the group, in one atomic batch (with the base chains when needed)."""
        expected = _expected(group)
        memory = nftruleset.Memory()
        if memory.known("base") and self._create(group, expected):
            return
        listing = _read(memory, set(expected))
        if set(expected) & _chain_names(listing):  # a re-ADD: its old jumps to remove too
            listing = _read(memory, set(expected) | set(_PARENTS))
        cmds = ([] if _base_ready(memory, listing) else _base()) + self._removal(listing, set(expected))
        for chain, rules in expected.items():
            cmds.append({"add": _chain(chain)})
            cmds += rules
        for parent, child, match in _jumps(group):
            cmds.append(_rule(parent, match + [{"jump": {"target": child}}], child))
        nftruleset.run(cmds)

    def _create(self, group: RuleGroup, expected: dict[str, list[dict[str, Any]]]) -> bool:
        """The group as one batch that reads nothing: True if it went in.

        An attachment's first ADD (the common case) finds none of its chains; reading to make sure
        cost a list command per chain, and each makes libnftables fetch every chain's name (it
        grows with the attachments).  ``create`` refuses a chain that exists and the batch is
        atomic, so a re-ADD (or anything else amiss) changes nothing here and takes the reading path,
        where a real failure (a rule the kernel refuses) is raised again with its own message.
        """
        cmds: list[dict[str, Any]] = []
        for chain, rules in expected.items():
            cmds.append({"create": _chain(chain)})
            cmds += rules
        for parent, child, match in _jumps(group):
            cmds.append(_rule(parent, match + [{"jump": {"target": child}}], child))
        try:
            nftruleset.run(cmds)
        except errors.CNIError:
            return False
        return True

    def apply_network(self, net: NetworkRules) -> None:
        """Install (or replace) the network's isolation and icc rules; add its bridge to the set.

        Nothing is written when all of it is already in place (every ADD but a network's first).
        """
        # What the network's rules depend on: its settings, and whether br_netfilter is loaded (the
        # icc rules), which no ruleset generation shows.
        state = repr((net, self._icc_subnets(net)))
        memory = nftruleset.Memory()
        if memory.known(f"network {net.chain}") == state:
            return
        listing = nftruleset.chains({net.chain, "isolation", *_BASE}, sets=("bridges",))
        rules = self._network_rules(net)
        bridge_listing = nftruleset.table(**_BRIDGE_TABLE)
        if _base_in_place(listing) and self._network_in_place(net, listing, rules, bridge_listing):
            memory.learned("base", True)
            memory.learned(f"network {net.chain}", state)
            return
        cmds = _base() + self._removal(listing, {net.chain})
        cmds.append({"add": {"element": {"family": FAMILY, "table": TABLE, "name": "bridges", "elem": [net.bridge]}}})
        if rules:
            cmds.append({"add": _chain(net.chain)})
            cmds += rules
            cmds.append(_rule("isolation", [_match(_IFNAME["iif"], net.bridge), {"jump": {"target": net.chain}}],
                              net.chain))
            if net.internal:  # what enters the bridge from elsewhere too
                cmds.append(_rule("isolation", [_match(_IFNAME["oif"], net.bridge), {"jump": {"target": net.chain}}],
                                  net.chain))
        cmds += self._icc(net, bridge_listing)
        nftruleset.run(cmds)

    def _network_in_place(self, net: NetworkRules, listing: list[dict[str, Any]], rules: list[dict[str, Any]],
                          bridge_listing: list[dict[str, Any]]) -> bool:
        bridges = next((o["set"].get("elem", []) for o in listing if o.get("set", {}).get("name") == "bridges"), [])
        if net.bridge not in (bridges if isinstance(bridges, list) else [bridges]):
            return False
        present = net.chain in _chain_names(listing)
        if present != bool(rules) or _comments(listing, net.chain) != [r["add"]["rule"]["comment"] for r in rules]:
            return False
        if _comments(listing, "isolation").count(net.chain) != ((2 if net.internal else 1) if rules else 0):
            return False
        icc_rules = sum(1 for o in bridge_listing if o.get("rule", {}).get("comment") == f"no-icc/{net.bridge}")
        return icc_rules == len(self._icc_subnets(net))

    def _network_rules(self, net: NetworkRules) -> list[dict[str, Any]]:
        rules = []
        if net.isolate:
            rules.append(_rule(net.chain, [_match(_IFNAME["oif"], net.bridge, "!="), _match(_IFNAME["oif"], "@bridges"),
                                           {"drop": None}], f"isolate/{net.bridge}"))
        if net.internal:  # nothing forwarded between the bridge and any other interface, either way
            rules.append(_rule(net.chain, [_match(_IFNAME["oif"], net.bridge, "!="), {"drop": None}],
                               f"internal/{net.bridge}"))
            rules.append(_rule(net.chain, [_match(_IFNAME["iif"], net.bridge, "!="), {"drop": None}],
                               f"internal-in/{net.bridge}"))
        if not net.icc:
            # Seen here only when br_netfilter hands bridged frames to the IP hooks.
            rules.append(_rule(net.chain, [_match(_IFNAME["oif"], net.bridge), {"drop": None}], f"no-icc/{net.bridge}"))
        return rules

    @staticmethod
    def _icc_subnets(net: NetworkRules) -> list[str]:
        """The subnets that need a bridge-family drop rule for ``net``."""
        # Without br_netfilter switched frames never reach the inet hooks.  Matched on the
        # subnet, not the bridge: `meta ibrname` needs nft_meta_bridge, which kernels may lack
        # (these machines do).  Traffic to the gateway is local, not switched.
        if net.icc:
            return []
        return [s for s in net.subnets if not sysctl.br_netfilter_active(ipaddress.ip_network(s, strict=False).version)]

    def _icc(self, net: NetworkRules, listing: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Commands that make the bridge-family rule of ``net`` match its icc setting."""
        where = {"family": "bridge", "table": TABLE}
        cmds: list[dict[str, Any]] = [
            {"add": {"table": _BRIDGE_TABLE}},
            {"add": {"chain": dict(where, name="forward", type="filter", hook="forward", prio=0, policy="accept")}}]
        label = f"no-icc/{net.bridge}"
        cmds += [{"delete": {"rule": dict(where, chain="forward", handle=o["rule"]["handle"])}}
                 for o in listing if "rule" in o and o["rule"].get("comment") == label]
        for subnet in self._icc_subnets(net):
            v = ipaddress.ip_network(subnet).version
            cmds.append({"add": {"rule": dict(where, chain="forward", comment=label, expr=[
                _addr_match(v, "saddr", subnet), _addr_match(v, "daddr", subnet), {"drop": None}])}})
        return cmds

    def remove_chains(self, chains: set[str]) -> None:
        """Remove these group chains and the jumps to them; absent ones are fine."""
        # Only what the removal reads (the chains, the jumps in their parents): every list command
        # costs a round trip, and the base chains and the bridges set took six more per DEL.
        listing = nftruleset.chains(chains | set(_PARENTS))
        cmds = self._removal(listing, chains)
        if cmds:
            nftruleset.run(cmds)

    def chains(self) -> set[str]:
        """Names of every group chain present."""
        return {o["chain"]["name"] for o in nftruleset.table() if "chain" in o and o["chain"]["name"].startswith("NK-")}

    def rule_comments(self) -> dict[str, list[str]]:
        """Group chain -> the comments of its rules, in order."""
        out: dict[str, list[str]] = {}
        for obj in nftruleset.table():
            if "chain" in obj and obj["chain"]["name"].startswith("NK-"):
                out.setdefault(obj["chain"]["name"], [])
            rule = obj.get("rule")
            if rule and rule["chain"].startswith("NK-"):
                out.setdefault(rule["chain"], []).append(rule.get("comment", ""))
        return out

    def group_comments(self, chain: str) -> list[str] | None:
        """Comments of one group chain's rules, or None if the chain is absent."""
        try:
            listing = nftruleset.run([{"list": _chain(chain)}])
        except errors.CNIError:
            return None
        return _comments(listing, chain)

    def expected_comments(self, group: RuleGroup) -> dict[str, list[str]]:
        """What rule_comments() shows for the group once applied."""
        return {chain: [r["add"]["rule"]["comment"] for r in rules] for chain, rules in _expected(group).items()}

    def forward_blockers(self, versions: frozenset[int] = frozenset((4, 6))) -> list[str]:
        """Base forward chains of other tables whose policy drops (Docker's, firewalld's), and the
        legacy iptables FORWARD when it drops by default (the kernel applies it beside nft)."""
        return forward_blockers.nft(versions) + forward_blockers.legacy(versions)
