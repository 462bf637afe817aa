"""The legacy iptables backend on throwaway namespaces: layout, idempotence, removal, atomicity, packets.

Every table touched here belongs to a namespace made by the test (read back with
``ip netns exec NS iptables-legacy-save``); the machine's own tables are never opened.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import threading
from typing import Any, Callable, Iterator

import pytest

from netkit import errors
from netkit.firewall import forward_blockers, iptables_session, iptc_loader
from netkit.firewall.iptables import IptablesBackend
from netkit.firewall.model import DNAT, MASQ, PortMapping, RuleGroup
from netkit.firewall.nftables import NftablesBackend
from netkit.net import netns
from tests import sandbox as sb
from tests.sandbox import Namespace

HOST_IP, CONTAINER_IP, CLIENT_IP, HOST_UPLINK = "10.123.0.1", "10.123.0.2", "10.124.0.2", "10.124.0.1"
ADDR = ipaddress.ip_interface(f"{CONTAINER_IP}/24")
WEB = [PortMapping(18080, 80), PortMapping(5353, 53, "udp", HOST_IP)]


def dnat(mappings: list[PortMapping] = WEB, cid: str = "c1", addresses: list[Any] | None = None,
         **kw: Any) -> RuleGroup:
    return RuleGroup(DNAT, "iptnet", cid, "eth0", [ADDR] if addresses is None else addresses, mappings, **kw)


def masq(cid: str = "c1") -> RuleGroup:
    return RuleGroup(MASQ, "iptnet", cid, "eth0", [ADDR])


@pytest.fixture
def make_ns() -> Iterator[Callable[[], Namespace]]:
    """Namespaces named with the suite's run prefix, all deleted afterwards."""
    if os.geteuid() != 0:
        pytest.fail("namespace tests need root")
    made: list[Namespace] = []

    def make() -> Namespace:
        ns = Namespace(sb.unique("ipt"))
        sb.ip("netns", "add", ns.name)
        made.append(ns)
        ns.run("ip", "link", "set", "lo", "up")
        return ns

    try:
        yield make
    finally:
        for ns in made:
            sb.ip("netns", "del", ns.name, check=False)


@pytest.fixture
def host(make_ns: Callable[[], Namespace]) -> Namespace:
    return make_ns()


def call(ns: Namespace, fn: Callable[..., Any], *args: Any) -> Any:
    """Run a backend method inside the namespace, on this thread."""
    with netns.entered(ns.path):
        return fn(*args)


def save(ns: Namespace, table: str = "nat", cmd: str = "iptables-legacy-save") -> list[str]:
    """The table's rules (``-A`` lines) in the namespace."""
    out = ns.run(cmd, "-t", table)
    assert out.returncode == 0, out.stderr
    return [line for line in out.stdout.splitlines() if line.startswith("-A ")]


def legacy_tables(ns: Namespace) -> set[str]:
    """The legacy tables that exist in the namespace (reading one with iptables-save creates it)."""
    return set(ns.run("cat", "/proc/net/ip_tables_names").stdout.split())


def chains_of(ns: Namespace, table: str = "nat") -> list[str]:
    out = ns.run("iptables-legacy-save", "-t", table).stdout
    return sorted(line[1:].split()[0] for line in out.splitlines() if line.startswith(":"))


BASE = ["-A PREROUTING -m addrtype --dst-type LOCAL -m comment --comment netkit -j NETKIT-HOSTPORTS",
        "-A OUTPUT -m addrtype --dst-type LOCAL -m comment --comment netkit -j NETKIT-HOSTPORTS",
        "-A POSTROUTING -m comment --comment netkit -j NETKIT-MASQ"]


def dnat_lines(g: RuleGroup) -> list[str]:
    c = g.chain
    return [
        f"-A NETKIT-HOSTPORTS -m comment --comment {c} -j {c}",
        f"-A NETKIT-MASQ -m conntrack --ctstate DNAT -m comment --comment {c}-S -j {c}-S",
        f'-A {c} -p tcp -m tcp --dport 18080 -m comment --comment "tcp/*/18080" -j DNAT --to-destination {CONTAINER_IP}:80',
        f'-A {c} -d {HOST_IP}/32 -p udp -m udp --dport 5353 -m comment --comment "udp/{HOST_IP}/5353" '
        f"-j DNAT --to-destination {CONTAINER_IP}:53",
        f"-A {c}-S -s 10.123.0.0/24 -d {CONTAINER_IP}/32 -m conntrack --ctstate DNAT "
        f'-m comment --comment "snat/10.123.0.0/24->{CONTAINER_IP}" -j MASQUERADE',
        f"-A {c}-S -s 127.0.0.0/8 -d {CONTAINER_IP}/32 -m conntrack --ctstate DNAT "
        f'-m comment --comment "snat/127.0.0.0/8->{CONTAINER_IP}" -j MASQUERADE',
    ]


def masq_lines(g: RuleGroup) -> list[str]:
    c = g.chain
    return [
        f"-A NETKIT-MASQ -s {CONTAINER_IP}/32 -m comment --comment {c} -j {c}",
        f'-A {c} -d 10.123.0.0/24 -m comment --comment "keep/10.123.0.0/24" -j RETURN',
        f'-A {c} -d 224.0.0.0/4 -m comment --comment "keep/224.0.0.0/4" -j RETURN',
        f'-A {c} -m comment --comment "masq/{CONTAINER_IP}" -j MASQUERADE',
    ]


# --- layout ------------------------------------------------------------------------------------------


def test_dnat_group_layout_and_comments(host: Namespace) -> None:
    fw, g = IptablesBackend(), dnat()
    call(host, fw.apply, g)
    assert sorted(save(host)) == sorted(BASE + dnat_lines(g))
    assert chains_of(host) == sorted(["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", "NETKIT-HOSTPORTS",
                                      "NETKIT-MASQ", g.chain, g.chain + "-S"])
    assert call(host, fw.chains) == {g.chain, g.chain + "-S"}
    assert call(host, fw.rule_comments) == fw.expected_comments(g)
    assert fw.expected_comments(g) == NftablesBackend().expected_comments(g)
    # No filter table (FORWARD cannot drop, nothing to let through); raw holds the 127/8 guard.
    assert legacy_tables(host) == {"nat", "raw"}
    raw = host.run("iptables-legacy-save", "-t", "raw", check=True).stdout
    assert '-A PREROUTING -m comment --comment netkit -j NETKIT-LOCALNET' in raw
    assert '-A NETKIT-LOCALNET -d 127.0.0.0/8 ! -i lo -m comment --comment "netkit/localnet" -j DROP' in raw


@pytest.mark.parametrize("group", [
    dnat(masq_all=True),
    dnat(snat=False),
    dnat([PortMapping(7000, 70, "sctp"), PortMapping(7001, 71, "udp", "10.9.9.9")]),
    masq(),
    RuleGroup(DNAT, "iptnet", "c1", "eth0", [ipaddress.ip_interface("10.1.0.5/16"), ipaddress.ip_interface("10.2.0.5/16")],
              [PortMapping(80, 8080)]),
], ids=["masq-all", "no-snat", "sctp-hostip", "masq", "two-addresses"])
def test_comments_match_the_nftables_backend(host: Namespace, group: RuleGroup) -> None:
    fw = IptablesBackend()
    assert fw.expected_comments(group) == NftablesBackend().expected_comments(group)
    call(host, fw.apply, group)
    assert call(host, fw.rule_comments) == fw.expected_comments(group)


def test_masq_group_layout(host: Namespace) -> None:
    fw, g = IptablesBackend(), masq()
    call(host, fw.apply, g)
    assert sorted(save(host)) == sorted(BASE + masq_lines(g))
    assert call(host, fw.rule_comments) == fw.expected_comments(g) == {
        g.chain: ["keep/10.123.0.0/24", "keep/224.0.0.0/4", f"masq/{CONTAINER_IP}"]}


def test_apply_is_idempotent_and_replaces(host: Namespace) -> None:
    fw, g = IptablesBackend(), dnat()
    call(host, fw.apply, g)
    first = save(host)
    call(host, fw.apply, g)
    call(host, fw.apply, g)
    assert save(host) == first
    assert len(save(host)) == len(BASE) + len(dnat_lines(g))
    # Same attachment, other mappings: the old rules go, the jumps stay single.
    g2 = dnat([PortMapping(9090, 90)])
    call(host, fw.apply, g2)
    rules = save(host)
    assert not any("18080" in line or "5353" in line for line in rules)
    assert sum(f"-j {g.chain}" in line and line.startswith("-A NETKIT-HOSTPORTS") for line in rules) == 1
    assert call(host, fw.rule_comments)[g.chain] == ["tcp/*/9090"]


def test_base_jumps_exist_exactly_once(host: Namespace) -> None:
    host.run("iptables-legacy", "-t", "nat", "-N", "NETKIT-HOSTPORTS", check=True)
    for _ in range(2):  # copies and other forms of the jump are replaced by netkit's own, once
        host.run("iptables-legacy", "-t", "nat", "-A", "PREROUTING", "-j", "NETKIT-HOSTPORTS", check=True)
    host.run("iptables-legacy", "-t", "nat", "-A", "OUTPUT", "-p", "udp", "-j", "ACCEPT", check=True)  # not ours
    fw = IptablesBackend()
    call(host, fw.apply, dnat())
    call(host, fw.apply, masq())
    call(host, fw.apply, dnat())
    rules = save(host)
    assert [line for line in rules if line.startswith(("-A PREROUTING", "-A OUTPUT", "-A POSTROUTING"))] == [
        BASE[0], "-A OUTPUT -p udp -j ACCEPT", BASE[1], BASE[2]]


def test_ipv6_rules_go_to_ip6tables_in_the_same_layout(host: Namespace) -> None:
    fw = IptablesBackend()
    v6 = ipaddress.ip_interface("fd00:123::2/64")
    g = dnat([PortMapping(18080, 80), PortMapping(8443, 443, "tcp", "fd00:124::1")], addresses=[ADDR, v6])
    m = RuleGroup(MASQ, "iptnet", "c1", "eth0", [ADDR, v6])
    call(host, fw.apply, g)
    call(host, fw.apply, m)
    c = g.chain
    # IPv4's table has the IPv4 rules only (the IPv6 hostIP mapping is not there).
    assert sorted(save(host)) == sorted(BASE + [
        f"-A NETKIT-HOSTPORTS -m comment --comment {c} -j {c}",
        f"-A NETKIT-MASQ -m conntrack --ctstate DNAT -m comment --comment {c}-S -j {c}-S",
        f"-A NETKIT-MASQ -s {CONTAINER_IP}/32 -m comment --comment {m.chain} -j {m.chain}",
        *masq_lines(m)[1:],
        f'-A {c} -p tcp -m tcp --dport 18080 -m comment --comment "tcp/*/18080" -j DNAT --to-destination {CONTAINER_IP}:80',
        *dnat_lines(g)[4:]])
    assert sorted(save(host, "nat", "ip6tables-legacy-save")) == sorted(BASE + [
        f"-A NETKIT-HOSTPORTS -m comment --comment {c} -j {c}",
        f"-A NETKIT-MASQ -m conntrack --ctstate DNAT -m comment --comment {c}-S -j {c}-S",
        f"-A NETKIT-MASQ -s fd00:123::2/128 -m comment --comment {m.chain} -j {m.chain}",
        f'-A {m.chain} -d fd00:123::/64 -m comment --comment "keep/fd00:123::/64" -j RETURN',
        f'-A {m.chain} -d ff00::/8 -m comment --comment "keep/ff00::/8" -j RETURN',
        f'-A {m.chain} -m comment --comment "masq/fd00:123::2" -j MASQUERADE',
        f'-A {c} ! -d ::1/128 -p tcp -m tcp --dport 18080 -m comment --comment "tcp/*/18080" '
        "-j DNAT --to-destination [fd00:123::2]:80",
        f'-A {c} -d fd00:124::1/128 -p tcp -m tcp --dport 8443 -m comment --comment "tcp/fd00:124::1/8443" '
        "-j DNAT --to-destination [fd00:123::2]:443",
        f"-A {c}-S -s fd00:123::/64 -d fd00:123::2/128 -m conntrack --ctstate DNAT "
        '-m comment --comment "snat/fd00:123::/64->fd00:123::2" -j MASQUERADE'])
    # Both families read back as one: what CHECK and conflict detection compare.
    assert call(host, fw.rule_comments) == {**fw.expected_comments(g), **fw.expected_comments(m)}
    assert call(host, fw.group_comments, c) == ["tcp/*/18080", "tcp/*/18080", "tcp/fd00:124::1/8443"]
    assert call(host, fw.chains) == {c, c + "-S", m.chain}
    call(host, fw.remove_chains, {c, c + "-S", m.chain})
    assert save(host) == save(host, "nat", "ip6tables-legacy-save") == BASE
    assert call(host, fw.chains) == set()


def test_ipv4_only_groups_never_touch_ip6tables(host: Namespace) -> None:
    fw = IptablesBackend()
    call(host, fw.apply, dnat())
    call(host, fw.remove_chains, {dnat().chain, dnat().chain + "-S"})
    assert host.run("cat", "/proc/net/ip6_tables_names").stdout.split() == []


def test_namespaces_and_threads_do_not_mix(make_ns: Callable[[], Namespace]) -> None:
    # python-iptables caches one Table object per name for the whole process; libiptc's socket
    # belongs to the namespace of the thread that reads the table.
    a, b = make_ns(), make_ns()
    fw, ga, gb = IptablesBackend(), dnat(cid="a"), masq(cid="b")
    call(a, fw.apply, ga)
    call(b, fw.apply, gb)
    call(a, fw.apply, ga)
    errors_seen: list[BaseException] = []

    def in_thread() -> None:
        try:
            call(b, fw.apply, dnat([PortMapping(9090, 90)], cid="b2"))
        except BaseException as exc:  # reported to the test below
            errors_seen.append(exc)

    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join()
    assert errors_seen == []
    assert set(call(a, fw.rule_comments)) == {ga.chain, ga.chain + "-S"}
    assert set(call(b, fw.rule_comments)) == {gb.chain, dnat(cid="b2").chain, dnat(cid="b2").chain + "-S"}
    assert sorted(save(a)) == sorted(BASE + dnat_lines(ga))


# --- removal -------------------------------------------------------------------------------------------


def test_remove_chains_takes_everything_of_the_group(host: Namespace) -> None:
    fw, d, m = IptablesBackend(), dnat(), masq()
    other = dnat([PortMapping(9090, 90)], cid="c2")
    for g in (d, m, other):
        call(host, fw.apply, g)
    call(host, fw.remove_chains, {d.chain, d.chain + "-S"})
    rules = save(host)
    assert not any(d.chain in line for line in rules)
    assert d.chain not in chains_of(host) and d.chain + "-S" not in chains_of(host)
    assert call(host, fw.rule_comments) == {**fw.expected_comments(m), **fw.expected_comments(other)}
    assert sum(line.startswith("-A NETKIT-HOSTPORTS") for line in rules) == 1  # other's jump only
    call(host, fw.remove_chains, {d.chain, d.chain + "-S"})  # absent: fine
    call(host, fw.remove_chains, {m.chain, other.chain, other.chain + "-S", "NK-D-000000-000000000000"})
    assert call(host, fw.chains) == set()
    assert sorted(save(host)) == sorted(BASE)  # infrastructure stays, like the nftables base chains


def test_reads_and_removals_create_no_table(host: Namespace) -> None:
    fw = IptablesBackend()
    call(host, fw.remove_chains, {"NK-D-000000-000000000000"})
    assert call(host, fw.chains) == set()
    assert call(host, fw.rule_comments) == {}
    assert legacy_tables(host) == set()


# --- FORWARD policy DROP ---------------------------------------------------------------------------


def test_forward_drop_policy_gets_accepts_for_the_group(host: Namespace) -> None:
    host.run("iptables-legacy", "-P", "FORWARD", "DROP", check=True)
    host.run("iptables-legacy", "-A", "FORWARD", "-i", "lo", "-j", "ACCEPT", check=True)  # someone else's rule
    fw, d, m = IptablesBackend(), dnat(), masq()
    call(host, fw.apply, d)
    call(host, fw.apply, m)
    call(host, fw.apply, d)
    assert save(host, "filter") == [
        "-A FORWARD -m comment --comment netkit -j NETKIT-FORWARD",
        "-A FORWARD -i lo -j ACCEPT",
        f"-A NETKIT-FORWARD -s {CONTAINER_IP}/32 -m comment --comment \"{m.chain}/out/{CONTAINER_IP}\" -j ACCEPT",
        f"-A NETKIT-FORWARD -d {CONTAINER_IP}/32 -m conntrack --ctstate RELATED,ESTABLISHED "
        f"-m comment --comment \"{m.chain}/in/{CONTAINER_IP}\" -j ACCEPT",
        f"-A NETKIT-FORWARD -d {CONTAINER_IP}/32 -m conntrack --ctstate DNAT "
        f"-m comment --comment \"{d.chain}/dnat/{CONTAINER_IP}\" -j ACCEPT",
        f"-A NETKIT-FORWARD -s {CONTAINER_IP}/32 -m conntrack --ctstate RELATED,ESTABLISHED "
        f"-m comment --comment \"{d.chain}/reply/{CONTAINER_IP}\" -j ACCEPT",
    ]
    call(host, fw.remove_chains, {d.chain, d.chain + "-S"})
    assert not any(d.chain in line for line in save(host, "filter"))
    call(host, fw.remove_chains, {m.chain})
    assert save(host, "filter") == ["-A FORWARD -m comment --comment netkit -j NETKIT-FORWARD",
                                    "-A FORWARD -i lo -j ACCEPT"]


def test_a_node_group_accepts_new_connections_from_the_cluster_to_its_pod_subnet(host: Namespace) -> None:
    host.run("iptables-legacy", "-P", "FORWARD", "DROP", check=True)
    fw = IptablesBackend()
    node = RuleGroup(MASQ, "netkit-node", "n1", "pods", [ipaddress.ip_interface("10.244.1.1/16")],
                     sources=["10.244.1.0/24"])
    call(host, fw.apply, node)
    assert [line for line in save(host, "filter") if "NETKIT-FORWARD -" in line] == [
        f"-A NETKIT-FORWARD -s 10.244.1.0/24 -m comment --comment \"{node.chain}/out/10.244.1.0/24\" -j ACCEPT",
        f"-A NETKIT-FORWARD -d 10.244.1.0/24 -m conntrack --ctstate RELATED,ESTABLISHED "
        f"-m comment --comment \"{node.chain}/in/10.244.1.0/24\" -j ACCEPT",
        f"-A NETKIT-FORWARD -s 10.244.0.0/16 -d 10.244.1.0/24 "
        f"-m comment --comment \"{node.chain}/cluster/10.244.1.0/24\" -j ACCEPT"]
    call(host, fw.remove_chains, {node.chain})
    assert not any(node.chain in line for line in save(host, "filter"))


@pytest.mark.parametrize("rules, drops", [
    ([], None),
    (["-P FORWARD DROP"], "policy DROP"),
    (["-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", "-A FORWARD -i lo -j ACCEPT",
      "-A FORWARD -j REJECT --reject-with icmp-host-prohibited"], "unconditional REJECT in FORWARD"),
    (["-N MYFW", "-A FORWARD -m comment --comment mine -j MYFW", "-A MYFW -p tcp -j RETURN", "-A MYFW -j DROP"],
     "unconditional DROP in MYFW"),
    (["-N MYFW", "-A FORWARD -g MYFW", "-A FORWARD -j DROP"], None),  # falling off -g MYFW ends FORWARD...
    (["-N MYFW", "-A FORWARD -j MYFW", "-A FORWARD -j DROP"], "unconditional DROP in FORWARD"),  # ...-j goes on
    (["-N MYFW", "-A FORWARD -j MYFW", "-A MYFW -j RETURN", "-A MYFW -j DROP"], None),
    (["-A FORWARD -j ACCEPT", "-A FORWARD -j DROP", "-P FORWARD DROP"], None),
    (["-A FORWARD -s 10.9.9.9 -j DROP", "-A FORWARD ! -i eth0 -j DROP", "-A FORWARD -p udp -j REJECT",
      "-A FORWARD -f -j DROP", "-A FORWARD -m conntrack --ctstate INVALID -j DROP"], None),
    (["-N A", "-N B", "-A FORWARD -j A", "-A FORWARD -j A", "-A A -j B", "-A B -p tcp -j REJECT"], None),
], ids=["accept", "policy-drop", "rhel-reject", "own-chain", "goto", "jump", "return-first", "accept-first",
        "conditional-only", "twice"])
def test_accepts_are_made_exactly_when_forward_drops_by_default(host: Namespace, rules: list[str],
                                                                drops: str | None) -> None:
    host.run("iptables-legacy", "-S", check=True)  # the filter table exists in every case
    for rule in rules:
        host.run("iptables-legacy", *rule.split(), check=True)
    fw, g = IptablesBackend(), dnat()
    call(host, fw.apply, g)
    made = [line for line in save(host, "filter") if g.chain in line]
    assert bool(made) == (drops is not None), save(host, "filter")
    # What the nftables backend, which cannot let it through, reports of it.
    expected = [] if drops is None else [f"legacy iptables filter FORWARD ({drops})"]
    assert call(host, NftablesBackend().forward_blockers) == expected


def test_forward_blockers_are_the_nft_drops_not_the_legacy_one(host: Namespace) -> None:
    fw = IptablesBackend()
    host.run("iptables-legacy", "-P", "FORWARD", "DROP", check=True)
    assert call(host, fw.forward_blockers) == []  # apply() lets its traffic through this one
    host.run("nft", "add", "table", "ip", "filter", check=True)
    host.run("nft", "add", "chain", "ip", "filter", "FORWARD",
             "{ type filter hook forward priority 0; policy drop; }", check=True)
    assert call(host, fw.forward_blockers) == ["ip filter FORWARD"]
    host.run("nft", "add", "chain", "ip", "filter", "FORWARD", "{ policy accept; }", check=True)
    assert call(host, fw.forward_blockers) == []


def test_a_legacy_forward_that_stops_dropping_is_reported_no_more(host: Namespace) -> None:
    # The nft answer is kept while the nft ruleset is unchanged (iptables-legacy does not change
    # it); the legacy reading, made each time, must never be kept with it.
    fw = NftablesBackend()
    host.run("iptables-legacy", "-P", "FORWARD", "DROP", check=True)
    assert call(host, fw.forward_blockers) == ["legacy iptables filter FORWARD (policy DROP)"]
    host.run("iptables-legacy", "-P", "FORWARD", "ACCEPT", check=True)
    assert call(host, fw.forward_blockers) == []
    assert call(host, IptablesBackend().forward_blockers) == []


def test_no_legacy_filter_table_is_read_or_made_for_the_nftables_backend(host: Namespace) -> None:
    assert call(host, forward_blockers.legacy) == []
    assert legacy_tables(host) == set()


# --- all or nothing ------------------------------------------------------------------------------------


def _state(ns: Namespace) -> dict[str, list[str]]:
    return {t: chains_of(ns, t) + save(ns, t) for t in ("filter", "nat")}


def test_failed_nat_commit_puts_filter_back(host: Namespace, monkeypatch: pytest.MonkeyPatch) -> None:
    host.run("iptables-legacy", "-P", "FORWARD", "DROP", check=True)
    fw, old = IptablesBackend(), dnat()
    call(host, fw.apply, old)
    call(host, fw.apply, masq("c2"))
    before = _state(host)
    ipt = iptc_loader.load()
    real = ipt.Table.commit

    def failing(self: Any) -> None:
        if self.name == "nat":
            raise ipt.IPTCError("injected failure")
        real(self)

    monkeypatch.setattr(ipt.Table, "commit", failing)
    new = dnat([PortMapping(9090, 90)], addresses=[ipaddress.ip_interface("10.123.0.3/24")])
    with pytest.raises(errors.CNIError, match="injected failure") as exc:
        call(host, fw.apply, new)
    assert exc.value.code == errors.KERNEL
    assert _state(host) == before  # the filter table's new accepts were taken back, nat never changed
    with pytest.raises(errors.CNIError):
        call(host, fw.remove_chains, {old.chain, old.chain + "-S"})
    assert _state(host) == before
    monkeypatch.undo()
    call(host, fw.apply, new)
    assert call(host, fw.rule_comments)[new.chain] == ["tcp/*/9090"]


def test_first_apply_failing_leaves_no_rules(host: Namespace, monkeypatch: pytest.MonkeyPatch) -> None:
    host.run("iptables-legacy", "-P", "FORWARD", "DROP", check=True)
    ipt = iptc_loader.load()
    real = ipt.Table.commit

    def failing(self: Any) -> None:
        if self.name == "nat":
            raise ipt.IPTCError("boom")
        real(self)

    monkeypatch.setattr(ipt.Table, "commit", failing)
    with pytest.raises(errors.CNIError):
        call(host, IptablesBackend().apply, dnat())
    assert save(host, "nat") == []
    # Only the (empty) infrastructure chain and its jump may stay.
    assert save(host, "filter") == ["-A FORWARD -m comment --comment netkit -j NETKIT-FORWARD"]


def test_a_rule_failing_to_build_changes_nothing(host: Namespace, monkeypatch: pytest.MonkeyPatch) -> None:
    host.run("iptables-legacy", "-P", "FORWARD", "DROP", check=True)
    fw = IptablesBackend()
    call(host, fw.apply, dnat())
    before = _state(host)
    real = iptables_session.Session.build
    calls = []

    def build(self: Any, table: Any, spec: Any) -> Any:
        calls.append(spec)
        if len(calls) == 5:
            raise ValueError("invalid address")
        return real(self, table, spec)

    monkeypatch.setattr(iptables_session.Session, "build", build)
    with pytest.raises(errors.CNIError, match="invalid address"):
        call(host, fw.apply, dnat([PortMapping(9090, 90), PortMapping(9091, 91)]))
    assert _state(host) == before


# --- packets -------------------------------------------------------------------------------------------

SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 80))
s.listen(8)
print("ready", flush=True)
while True:
    conn, peer = s.accept()
    conn.sendall(f"hello from the container to {peer[0]}".encode())
    conn.close()
"""


def _link(a: Namespace, a_ip: str, b: Namespace, b_ip: str, name: str) -> None:
    """A veth between two namespaces, ``a_ip``/24 on a's end and ``b_ip``/24 on b's."""
    a.run("ip", "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", b.name, check=True)
    a.run("ip", "addr", "add", f"{a_ip}/24", "dev", name, check=True)
    a.run("ip", "link", "set", name, "up", check=True)
    b.run("ip", "addr", "add", f"{b_ip}/24", "dev", "eth0", check=True)
    b.run("ip", "link", "set", "eth0", "up", check=True)
    b.run("ip", "route", "add", "default", "via", a_ip, check=True)


@pytest.fixture
def container_server(host: Namespace, make_ns: Callable[[], Namespace]) -> Iterator[Namespace]:
    """A container namespace linked to the host (10.123.0.2 - 10.123.0.1), serving TCP port 80."""
    c = make_ns()
    _link(host, HOST_IP, c, CONTAINER_IP, "nkiptc0")
    proc = subprocess.Popen(["ip", "netns", "exec", c.name, sys.executable, "-c", SERVER],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield c
    finally:
        proc.kill()
        proc.wait()


def test_host_reaches_published_port_on_its_own_address(host: Namespace, container_server: Namespace) -> None:
    fw, g = IptablesBackend(), dnat([PortMapping(18080, 80)])
    direct = host.ask("tcp", CONTAINER_IP, 80)  # control: the host reaches the container's server
    assert direct == f"hello from the container to {HOST_IP}"
    assert host.unanswered("tcp", HOST_IP, 18080, control=direct)
    call(host, fw.apply, g)
    published = host.ask("tcp", HOST_IP, 18080)
    assert published == f"hello from the container to {HOST_IP}"
    call(host, fw.remove_chains, {g.chain, g.chain + "-S"})
    assert host.unanswered("tcp", HOST_IP, 18080, control=published)  # control: the same port, before


def test_forwarded_client_passes_a_drop_policy(host: Namespace, container_server: Namespace,
                                               make_ns: Callable[[], Namespace]) -> None:
    client = make_ns()
    _link(host, HOST_UPLINK, client, CLIENT_IP, "nkiptu0")
    host.run("sysctl", "-qw", "net.ipv4.ip_forward=1", check=True)
    host.run("iptables-legacy", "-P", "FORWARD", "DROP", check=True)
    fw, g = IptablesBackend(), dnat([PortMapping(18080, 80)])
    call(host, fw.apply, g)
    through = client.ask("tcp", HOST_UPLINK, 18080)
    assert through == f"hello from the container to {CLIENT_IP}"
    # Without netkit's accepts the DROP policy stops it: the rules really were what let it through.
    host.run("iptables-legacy", "-F", "NETKIT-FORWARD", check=True)
    assert client.unanswered("tcp", HOST_UPLINK, 18080, control=through)  # control: the same port, before


# --- the IPv6 helper process ---------------------------------------------------------------------------


def test_ip6tables_helper_errors_are_answers_not_tracebacks(host: Namespace) -> None:
    from netkit.firewall import iptables6

    with pytest.raises(errors.CNIError) as info:
        call(host, iptables6.call, "sync_networks", [{"no such field": 1}])
    assert info.value.code == errors.INTERNAL and "TypeError" in info.value.details
    assert call(host, iptables6.call, "chains") == []  # the same helper serves on


def test_ip6tables_helper_exits_on_a_framing_error() -> None:
    import json
    import socket

    from netkit.firewall import iptables6

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", iptables6._BOOT, json.dumps([p for p in sys.path if p])],
                            pass_fds=(theirs.fileno(),), stderr=subprocess.PIPE,
                            env={**os.environ, "NETKIT_IP6_FD": str(theirs.fileno())})
    theirs.close()
    with ours:
        ours.settimeout(60)  # only stops a hung test
        ours.sendall(iptables6._LEN.pack(1 << 30))  # a length no request has: out of step
        assert ours.recv(1) == b""  # it closed its end without answering
    assert proc.wait() == 0 and proc.stderr is not None and proc.stderr.read() == b""


def test_a_hung_ip6tables_helper_is_killed(host: Namespace, monkeypatch: pytest.MonkeyPatch) -> None:
    from netkit.firewall import iptables6

    monkeypatch.setattr(iptables6, "TIMEOUT_S", 1)
    monkeypatch.setattr(iptables6, "_BOOT", "import time; time.sleep(3600)")
    iptables6._reset()
    with pytest.raises(errors.CNIError) as info:
        call(host, iptables6.call, "chains")
    assert info.value.code == errors.KERNEL and "no answer" in info.value.details
    assert iptables6._helper is None  # killed and reaped: the next call starts a new one
