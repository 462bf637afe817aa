"""Firewalls of others that drop forwarded traffic by default, met by the plugins on both backends.

Docker on an iptables-legacy host sets filter FORWARD's policy to DROP; RHEL's iptables-services
and firewalld's iptables backend keep the policy ACCEPT and end FORWARD with an unconditional
REJECT.  The kernel applies the legacy tables beside the nft ones, so either form drops a published
port's forwarded traffic whatever netkit's nft table accepts.  The iptables backend writes in those
same tables and lets its attachments' traffic through; the nftables backend cannot, so its ADD
fails with code 108 and says what to change.  An nft chain whose policy drops (Docker on
iptables-nft) is beyond both: ADD fails on either.  Real rules in the sandbox host, real packets.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.sandbox import Namespace, Sandbox, bridge_conf

HOST, MACHINE = "10.30.0.1", "10.30.0.2"
MAPPINGS = [{"hostPort": 8080, "containerPort": 80}]

# Docker 24's legacy filter rules for docker0 (dockerd on a host where it enabled ip_forward).
DOCKER = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
"""

# RHEL's /etc/sysconfig/iptables (iptables-services): policy ACCEPT, FORWARD ends in a REJECT.
RHEL = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i lo -j ACCEPT
-A FORWARD -j REJECT --reject-with icmp-host-prohibited
COMMIT
"""

# A hand-made firewall: FORWARD jumps to a chain of its own that ends in a DROP.
OWN_CHAIN = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:MYFW - [0:0]
-A FORWARD -j MYFW
-A MYFW -m conntrack --ctstate INVALID -j DROP
-A MYFW -j DROP
COMMIT
"""

RULESETS = {"docker": DOCKER, "rhel": RHEL, "own-chain": OWN_CHAIN}


def _restore(ns: Namespace, ruleset: str) -> None:
    out = ns.run("iptables-legacy-restore", input=ruleset)
    assert out.returncode == 0, out.stderr


def _attach(box: Sandbox, c: Namespace, mappings: list[dict[str, Any]]) -> dict:
    rc, prev = box.call("netkit-bridge", "ADD", bridge_conf(box), c)
    assert rc == 0, prev
    rc, out = box.call("netkit-portmap", "ADD", _portmap_conf(mappings, prev), c)
    assert rc == 0, out
    return out


def _portmap_conf(mappings: list[dict[str, Any]], prev: dict) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "testnet", "type": "netkit-portmap",
            "capabilities": {"portMappings": True}, "runtimeConfig": {"portMappings": mappings}, "prevResult": prev}


@pytest.mark.parametrize("ruleset", sorted(RULESETS))
def test_published_port_answers_or_add_refuses_with_advice(fw_box: Sandbox, servers: list, ruleset: str) -> None:
    box = fw_box
    x = box.machine([HOST], MACHINE)
    a, b = box.container(), box.container()
    _attach(box, a, [{"hostPort": 8080, "containerPort": 80}])
    servers.append(a.serve("A", 80))
    assert x.ask("tcp", HOST, 8080) == f"A {MACHINE}"  # control: the path works
    _restore(box.host, RULESETS[ruleset])
    assert x.ask("tcp", HOST, 8080) is None  # and the legacy rules really drop what it carries
    before = box.group_chains()

    rc, prev = box.call("netkit-bridge", "ADD", bridge_conf(box), b)
    assert rc == 0, prev
    servers.append(b.serve("B", 80))
    mappings = [{"hostPort": 9090, "containerPort": 80}]
    rc, out = box.call("netkit-portmap", "ADD", _portmap_conf(mappings, prev), b)
    if box.firewall == "iptables":  # its accepts go in the very table that drops
        assert rc == 0, out
        assert x.ask("tcp", HOST, 9090) == f"B {MACHINE}"
        assert box.call("netkit-portmap", "DEL", _portmap_conf(mappings, prev), b) == (0, None)
        assert x.ask("tcp", HOST, 9090) is None
    else:  # an accept in netkit's nft table cannot override a legacy drop
        assert rc == 1 and out["code"] == 108, out
        assert "legacy" in out["details"] and "filter FORWARD" in out["details"], out
        assert "firewallBackend=iptables" in out["details"], out
    assert box.group_chains() == before
    assert b.ping("10.20.0.1")  # the container keeps its address and its network


def test_a_conditional_drop_rule_stays_the_admins_choice(fw_box: Sandbox, servers: list) -> None:
    # FORWARD accepts by default here; the admin's one rule drops this machine's traffic, and
    # neither backend may open a way around it (nor refuse the ADD: the drop is deliberate).
    box = fw_box
    x = box.machine([HOST], MACHINE)
    a, b = box.container(), box.container()
    _attach(box, a, [{"hostPort": 8080, "containerPort": 80}])
    servers += [a.serve("A", 80), b.serve("B", 80)]
    assert x.ask("tcp", HOST, 8080) == f"A {MACHINE}"  # control
    box.host.run("iptables-legacy", "-A", "FORWARD", "-s", MACHINE, "-j", "DROP", check=True)
    _attach(box, b, [{"hostPort": 9090, "containerPort": 80}])
    assert x.ask("tcp", HOST, 9090) is None
    assert (box.host.ask("tcp", HOST, 9090) or "").startswith("B ")  # published all the same


def test_an_nft_drop_policy_fails_add_on_both_backends(fw_box: Sandbox, servers: list) -> None:
    # An accept in the legacy tables does not override an nft base chain's drop either.
    box = fw_box
    x = box.machine([HOST], MACHINE)
    a, b = box.container(), box.container()
    _attach(box, a, [{"hostPort": 8080, "containerPort": 80}])
    servers.append(a.serve("A", 80))
    assert x.ask("tcp", HOST, 8080) == f"A {MACHINE}"  # control
    box.host.run("nft", "add", "table", "ip", "filter", check=True)
    box.host.run("nft", "add", "chain", "ip", "filter", "FORWARD",
                 "{ type filter hook forward priority 0; policy drop; }", check=True)
    assert x.ask("tcp", HOST, 8080) is None
    before = box.group_chains()
    rc, prev = box.call("netkit-bridge", "ADD", bridge_conf(box), b)
    assert rc == 0, prev
    rc, out = box.call("netkit-portmap", "ADD", _portmap_conf([{"hostPort": 9090, "containerPort": 80}], prev), b)
    assert rc == 1 and out["code"] == 108 and "ip filter FORWARD" in out["details"], out
    assert "DOCKER-USER" in out["details"] and "firewallBackend" not in out["details"], out
    assert box.group_chains() == before


def test_legacy_ip6tables_forward_drop_over_ipv6(fw_box: Sandbox, servers: list) -> None:
    # Docker's rules in ip6tables (dockerd with ip6tables enabled): the iptables backend lets the
    # attachment's IPv6 traffic through them, the nftables backend refuses with advice.
    from tests.plugins.test_ipv6 import HOST6, MACHINE6, dual_conf, machine6

    box = fw_box
    x = machine6(box)
    out = box.host.run("ip6tables-legacy-restore", input=DOCKER)
    assert out.returncode == 0, out.stderr
    a = box.container()
    rc, out = box.call("netkit-bridge", "ADD", dict(dual_conf(box), runtimeConfig={"portMappings": MAPPINGS}), a)
    if box.firewall == "iptables":
        assert rc == 0, out
        servers.append(a.serve("A", 80))
        assert x.ask("tcp", HOST6, 8080) == f"A {MACHINE6}"
        assert "-A NETKIT-FORWARD" in box.host.run("ip6tables-legacy-save", "-t", "filter").stdout
    else:
        assert rc == 1 and out["code"] == 108, out
        assert "legacy ip6tables filter FORWARD" in out["details"] and "firewallBackend=iptables" in out["details"], out
        # An IPv4-only attachment is not refused for an IPv6 drop.
        rc, out = box.call("netkit-bridge", "ADD", bridge_conf(box, name="v4net", bridge="nkbr1", subnet="10.21.0.0/24",
                                                             capabilities={"portMappings": True},
                                                             runtimeConfig={"portMappings": MAPPINGS}), box.container())
        assert rc == 0, out


def test_an_nft_drop_chain_counts_for_the_families_it_sees(fw_box: Sandbox, servers: list) -> None:
    # An ip6 table's forward drop never sees IPv4: an IPv4-only attachment is published; an inet one
    # sees both families and refuses it.
    box = fw_box
    x = box.machine([HOST], MACHINE)
    a, b = box.container(), box.container()
    box.host.run("nft", "add", "table", "ip6", "filter6", check=True)
    box.host.run("nft", "add", "chain", "ip6", "filter6", "FORWARD",
                 "{ type filter hook forward priority 0; policy drop; }", check=True)
    _attach(box, a, [{"hostPort": 8080, "containerPort": 80}])
    servers.append(a.serve("A", 80))
    assert x.ask("tcp", HOST, 8080) == f"A {MACHINE}"
    box.host.run("nft", "add", "table", "inet", "both", check=True)
    box.host.run("nft", "add", "chain", "inet", "both", "FORWARD",
                 "{ type filter hook forward priority 0; policy drop; }", check=True)
    rc, prev = box.call("netkit-bridge", "ADD", bridge_conf(box), b)
    assert rc == 0, prev
    rc, out = box.call("netkit-portmap", "ADD", _portmap_conf([{"hostPort": 9090, "containerPort": 80}], prev), b)
    assert rc == 1 and out["code"] == 108 and "inet both FORWARD" in out["details"], out
    assert "ip6 filter6" not in out["details"], out
