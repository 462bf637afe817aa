"""Dual stack through netkit-bridge on real namespaces, both firewall backends: addresses with no DAD
delay, the IPv6 gateway and default route, forwarding, masquerade, isolation and published ports
over IPv6 (from another machine, from the host's own IPv6 address, [::1], from the bridge, hairpin).

Topology per test: the sandbox host has a dual-stack bridge (10.20.0.0/24 + fd00:20::/64) and an
uplink to another machine X: the host is 10.30.0.1 / fd00:30::1, X is 10.30.0.2 / fd00:30::2.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from typing import Any

from netkit import procinfo
from netkit.firewall import ports
from netkit.firewall.model import DNAT, group_chain
from netkit.plugins import proxy6
import pytest

from tests.sandbox import Namespace, Sandbox, bridge_conf, ip

HOST6, MACHINE6 = "fd00:30::1", "fd00:30::2"
SUBNET6 = "fd00:20::/64"
WEB = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
       {"hostPort": 8080, "containerPort": 80, "protocol": "udp"}]


def dual_conf(box: Sandbox, name: str = "testnet", bridge: str = "nkbr0", subnet: str = "10.20.0.0/24",
              subnet6: str = SUBNET6, **extra: Any) -> dict[str, Any]:
    """A dual-stack bridge network in the shape `netkit network create --ipv6` writes."""
    conf = bridge_conf(box, name=name, subnet=subnet, bridge=bridge, isGateway=True, ipMasq=True, hairpinMode=True,
                       capabilities={"portMappings": True}, **extra)
    conf["ipam"]["ranges"] = [[{"subnet": subnet}], [{"subnet": subnet6}]]
    conf["ipam"]["routes"] = [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
    return conf


def machine6(box: Sandbox) -> Namespace:
    """Another machine on a link to the sandbox host, with IPv4 and IPv6 addresses on it."""
    x = box.machine(["10.30.0.1"], "10.30.0.2")
    # nodad: usable at once, as the containers' addresses are.
    box.host.run("ip", "-6", "addr", "add", f"{HOST6}/64", "dev", "uplink0", "nodad", check=True)
    x.run("ip", "-6", "addr", "add", f"{MACHINE6}/64", "dev", "eth0", "nodad", check=True)
    return x


def attach(box: Sandbox, c: Namespace, conf: dict[str, Any], mappings: list[dict[str, Any]] | None = None) -> dict:
    """ADD ``c`` (publishing ``mappings``); the result."""
    if mappings:
        conf = dict(conf, runtimeConfig={"portMappings": mappings})
    rc, out = box.call("netkit-bridge", "ADD", conf, c)
    assert rc == 0, out
    return out


def v6(result: dict) -> str:
    """The container's IPv6 address in a result."""
    return next(str(ipaddress.ip_interface(ip["address"]).ip) for ip in result["ips"] if ":" in ip["address"])


def test_dual_stack_addresses_gateway_routes_and_forwarding(fw_box: Sandbox) -> None:
    box = fw_box
    a, b = box.container(), box.container()
    res_a, res_b = attach(box, a, dual_conf(box)), attach(box, b, dual_conf(box))
    assert [ip["address"] for ip in res_a["ips"]] == ["10.20.0.2/24", "fd00:20::2/64"]
    assert [ip["gateway"] for ip in res_a["ips"]] == ["10.20.0.1", "fd00:20::1"]
    # Usable at once: neither the container's address nor the gateway is tentative (DAD skipped).
    for ns, dev in ((a, "eth0"), (box.host, "nkbr0")):
        info = json.loads(ns.run("ip", "-j", "-6", "addr", "show", "dev", dev, "scope", "global").stdout)
        flags = [a for link in info for a in link["addr_info"] if "local" in a]
        assert flags and all(not f.get("tentative") and f.get("nodad") for f in flags), flags
    routes = json.loads(a.run("ip", "-j", "-6", "route", "show", "default").stdout)
    assert [(r["gateway"], r["dev"]) for r in routes] == [("fd00:20::1", "eth0")]
    assert box.host.run("sysctl", "-n", "net.ipv6.conf.all.forwarding").stdout.strip() == "1"
    assert a.ping(v6(res_b)) is not None and a.ping("fd00:20::1") is not None
    # CHECK sees both families in place.
    rc, out = box.call("netkit-bridge", "CHECK", dict(dual_conf(box), prevResult=res_a), a)
    assert rc == 0, out


def test_masquerade_over_ipv6_to_another_machine(fw_box: Sandbox, servers: list) -> None:
    box = fw_box
    x = machine6(box)
    a = box.container()
    attach(box, a, dual_conf(box))
    servers.append(x.serve("X", 7000))
    # X has no route to the containers' subnet: only the host's masquerade brings the answer back.
    assert a.ask("tcp", MACHINE6, 7000) == f"X {HOST6}"
    assert a.ask("udp", MACHINE6, 7000) == f"X {HOST6}"


def test_published_port_over_ipv6_from_every_place(fw_box: Sandbox, servers: list) -> None:
    box = fw_box
    x = machine6(box)
    a, b = box.container(), box.container()
    res_a = attach(box, a, dual_conf(box), WEB)
    res_b = attach(box, b, dual_conf(box))
    servers.append(a.serve("A", 80))
    for proto in ("tcp", "udp"):
        assert x.ask(proto, HOST6, 8080) == f"A {MACHINE6}"                        # another machine, IPv6
        assert x.ask(proto, "10.30.0.1", 8080) == "A 10.30.0.2"                    # ... and IPv4, same mapping
        assert (box.host.ask(proto, HOST6, 8080) or "").startswith("A ")           # the host's own IPv6 address
        assert (b.ask(proto, HOST6, 8080) or "").startswith("A ")                  # same-bridge container
        assert (a.ask(proto, HOST6, 8080) or "").startswith("A ")                  # hairpin
    assert a.ask("tcp", v6(res_a), 80) is not None
    # DEL takes the IPv6 rules too: the port goes silent on both families.
    before = x.ask("tcp", HOST6, 8080)
    conf = dict(dual_conf(box), runtimeConfig={"portMappings": WEB})
    assert box.call("netkit-bridge", "DEL", conf, a) == (0, None)
    assert x.unanswered("tcp", HOST6, 8080, control=before)
    assert box.call("netkit-bridge", "DEL", dict(dual_conf(box), prevResult=res_b), b) == (0, None)
    assert box.group_chains() == []  # both families' tables


def test_ipv6_host_ip_binds_the_mapping_to_that_family(fw_box: Sandbox, servers: list) -> None:
    box = fw_box
    x = machine6(box)
    a = box.container()
    attach(box, a, dual_conf(box), [{"hostPort": 8081, "containerPort": 80, "hostIP": HOST6}])
    servers.append(a.serve("A", 80))
    got = x.ask("tcp", HOST6, 8081)
    assert got == f"A {MACHINE6}"
    assert x.unanswered("tcp", "10.30.0.1", 8081, control=got)


def test_networks_are_isolated_over_ipv6(fw_box: Sandbox, servers: list) -> None:
    box = fw_box
    x = machine6(box)
    a, b = box.container(), box.container()
    attach(box, a, dual_conf(box))
    res_b = attach(box, b, dual_conf(box, name="othernet", bridge="nkbr1", subnet="10.21.0.0/24",
                                       subnet6="fd00:21::/64"))
    servers += [b.serve("B", 80), x.serve("X", 80)]
    control = a.ask("tcp", MACHINE6, 80)  # a's IPv6 path out of its bridge works
    assert control == f"X {HOST6}"
    assert a.unanswered("tcp", v6(res_b), 80, control=control)


def _proxy_pid(box: Sandbox, c: Namespace) -> int | None:
    """The live [::1] proxy of ``c``'s attachment, by its record; None when there is none."""
    record = os.path.join(proxy6.DIR, f"{ports.namespace_key(box.host.path)}-{group_chain(DNAT, 'testnet', c.name, 'eth0')}")
    try:
        with open(record, encoding="ascii") as f:
            pid, start = f.read().split()
    except OSError:
        return None
    return int(pid) if procinfo.start_time(int(pid)) == start else None


def _gone(pid: int) -> bool:
    """Wait for process ``pid`` to end (the timeout only stops a hung test)."""
    deadline = time.monotonic() + 30
    while procinfo.start_time(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    return procinfo.start_time(pid) is None


def test_loopback_proxy_ends_with_del_and_with_the_container(fw_box: Sandbox, servers: list) -> None:
    box = fw_box
    a, b, v4only = box.container(), box.container(), box.container()
    attach(box, a, dual_conf(box), WEB)
    pid = _proxy_pid(box, a)
    assert pid is not None
    servers.append(a.serve("A", 80))
    assert (box.host.ask("tcp", "::1", 8080) or "").startswith("A ")
    conf = dict(dual_conf(box), runtimeConfig={"portMappings": WEB})
    assert box.call("netkit-bridge", "DEL", conf, a) == (0, None)
    assert _gone(pid) and _proxy_pid(box, a) is None
    # A container removed without a DEL: its veth goes, and the proxy with it (record included).
    attach(box, b, dual_conf(box), [{"hostPort": 9090, "containerPort": 80}])
    pid = _proxy_pid(box, b)
    assert pid is not None
    ip("netns", "del", b.name)
    box.containers.remove(b)
    assert _gone(pid) and not [n for n in os.listdir(proxy6.DIR) if n.endswith(group_chain(DNAT, "testnet", b.name, "eth0"))]
    # IPv4-only attachments get no proxy (they are not published on IPv6 at all).
    attach(box, v4only, bridge_conf(box, capabilities={"portMappings": True}), [{"hostPort": 9091, "containerPort": 80}])
    assert _proxy_pid(box, v4only) is None


@pytest.mark.parametrize("backend, br_netfilter", [("nftables", "1"), ("nftables", "0"), ("iptables", "1")])
def test_icc_false_separates_containers_over_ipv6(box: Sandbox, servers: list, backend: str, br_netfilter: str) -> None:
    # IPv6 has its own br_netfilter switch: without it only nftables' bridge-family rule sees the frames.
    box.firewall = backend
    for key in ("iptables", "ip6tables"):
        box.host.run("sysctl", "-w", f"net.bridge.bridge-nf-call-{key}={br_netfilter}", check=True)
    a, b = box.container(), box.container()
    attach(box, a, dual_conf(box, icc=False))
    res_b = attach(box, b, dual_conf(box, icc=False))
    servers.append(b.serve("B", 80))
    gateway = a.ping("fd00:20::1")  # control: A reaches its gateway over the bridge
    assert gateway and (box.host.ask("tcp", v6(res_b), 80) or "").startswith("B ")
    assert a.unanswered("tcp", v6(res_b), 80, control=gateway)


def test_icc_false_on_iptables_needs_the_ipv6_br_netfilter_switch_too(box: Sandbox) -> None:
    box.firewall = "iptables"
    box.host.run("sysctl", "-w", "net.bridge.bridge-nf-call-iptables=1", check=True)
    box.host.run("sysctl", "-w", "net.bridge.bridge-nf-call-ip6tables=0", check=True)
    rc, out = box.call("netkit-bridge", "ADD", dual_conf(box, icc=False), box.container())
    assert rc == 1 and out["code"] == 7 and "bridge-nf-call-ip6tables" in out["details"], out


def test_portmap_chained_after_the_bridge_publishes_over_ipv6(fw_box: Sandbox, servers: list) -> None:
    # podman's shape: the bridge without the capability, netkit-portmap next with prevResult.
    box = fw_box
    x = machine6(box)
    a = box.container()
    conf = dual_conf(box)
    del conf["capabilities"]
    prev = attach(box, a, conf)
    pm = {"cniVersion": "1.0.0", "name": "testnet", "type": "netkit-portmap", "capabilities": {"portMappings": True},
          "runtimeConfig": {"portMappings": WEB}, "prevResult": prev}
    rc, out = box.call("netkit-portmap", "ADD", pm, a)
    assert rc == 0, out
    servers.append(a.serve("A", 80))
    assert x.ask("tcp", HOST6, 8080) == f"A {MACHINE6}"
    assert (box.host.ask("udp", "::1", 8080) or "").startswith("A ")
    pid = _proxy_pid(box, a)
    assert pid is not None
    assert box.call("netkit-portmap", "CHECK", pm, a) == (0, None)
    assert box.call("netkit-portmap", "DEL", pm, a) == (0, None)
    assert _gone(pid) and not [c for c in box.group_chains() if c.startswith("NK-D-")]  # both families


def test_a_loopback_port_held_by_the_host(fw_box: Sandbox, servers: list) -> None:
    # The host's own service on port 7070 keeps [::1]; a mapping on every address still publishes
    # (NAT serves the others), one asked for on [::1] alone is refused.
    box = fw_box
    x = machine6(box)
    servers.append(box.host.serve("H", 7070))
    a, b = box.container(), box.container()
    attach(box, a, dual_conf(box), [{"hostPort": 7070, "containerPort": 80}])
    servers.append(a.serve("A", 80))
    assert x.ask("tcp", HOST6, 7070) == f"A {MACHINE6}"
    assert (box.host.ask("tcp", "::1", 7070) or "").startswith("H ")
    conf = dict(dual_conf(box), runtimeConfig={"portMappings": [{"hostPort": 7071, "containerPort": 80, "hostIP": "::1"}]})
    servers.append(box.host.serve("H2", 7071))
    rc, out = box.call("netkit-bridge", "ADD", conf, b)
    assert rc == 1 and out["code"] == 107 and "tcp/::1/7071" in out["msg"], out
    assert _proxy_pid(box, b) is None and b.links() == ["lo"]


def test_an_unspecified_host_address_publishes_on_its_family_alone(fw_box: Sandbox, servers: list) -> None:
    # Docker's and CNI portmap's rule: -p 0.0.0.0:P:C is IPv4 only, -p [::]:P:C IPv6 only ([::1] included).
    box = fw_box
    x = machine6(box)
    a, b, c = box.container(), box.container(), box.container()
    attach(box, a, dual_conf(box), [{"hostPort": 8082, "containerPort": 80, "hostIP": "0.0.0.0"},
                                    {"hostPort": 8083, "containerPort": 80, "hostIP": "::"}])
    servers.append(a.serve("A", 80))
    v4 = x.ask("tcp", "10.30.0.1", 8082)
    assert v4 == "A 10.30.0.2"
    assert x.unanswered("tcp", HOST6, 8082, control=v4)
    assert box.host.unanswered("tcp", "::1", 8082, control=lambda: box.host.ask("tcp", "127.0.0.1", 8082))
    v6_ = x.ask("tcp", HOST6, 8083)
    assert v6_ == f"A {MACHINE6}"
    assert x.unanswered("tcp", "10.30.0.1", 8083, control=v6_)
    assert (box.host.ask("tcp", "::1", 8083) or "").startswith("A ")
    # One family each: 0.0.0.0 and [::] on one port do not clash; every address clashes with both.
    attach(box, b, dual_conf(box), [{"hostPort": 8083, "containerPort": 80, "hostIP": "0.0.0.0"}])
    rc, out = box.call("netkit-bridge", "ADD", dict(dual_conf(box), runtimeConfig={"portMappings": [
        {"hostPort": 8083, "containerPort": 80}]}), c)
    assert rc == 1 and out["code"] == 107, out


def test_an_ipv6_host_address_on_an_ipv4_only_attachment_is_refused(fw_box: Sandbox) -> None:
    box = fw_box
    c = box.container()
    for host_ip in ("::1", HOST6, "::"):
        conf = dict(bridge_conf(box, capabilities={"portMappings": True}),
                    runtimeConfig={"portMappings": [{"hostPort": 9092, "containerPort": 80, "hostIP": host_ip}]})
        rc, out = box.call("netkit-bridge", "ADD", conf, c)
        assert rc == 1 and out["code"] == 7 and "no IPv6 address" in out["msg"], out
        assert c.links() == ["lo"] and _proxy_pid(box, c) is None


@pytest.mark.parametrize("kind", ["isolate", "internal"])
def test_an_ipv4_only_network_stays_closed_over_ipv6(fw_box: Sandbox, servers: list, kind: str) -> None:
    # A dual-stack ADD turns IPv6 forwarding on; a container of an IPv4-only network can then give
    # itself an IPv6 address and route through its bridge: its isolation must hold over IPv6 too.
    box = fw_box
    a, b = box.container(), box.container()
    v4net = bridge_conf(box, name="v4net", bridge="nkbr1", subnet="10.21.0.0/24", internal=kind == "internal")
    rc, out = box.call("netkit-bridge", "ADD", v4net, a)
    assert rc == 0, out
    res_b = attach(box, b, dual_conf(box, isolate=False))
    # The container's own IPv6 (the host's address on the bridge only gives the replies a way back).
    box.host.run("ip", "-6", "addr", "add", "fd00:99::1/64", "dev", "nkbr1", "nodad", check=True)
    a.run("ip", "-6", "addr", "add", "fd00:99::2/64", "dev", "eth0", "nodad", check=True)
    a.run("ip", "-6", "route", "add", "default", "via", "fd00:99::1", check=True)
    servers.append(b.serve("B", 80))
    control = a.ping("fd00:99::1")
    assert control is not None and (box.host.ask("tcp", v6(res_b), 80) or "").startswith("B ")
    assert a.unanswered("tcp", v6(res_b), 80, control=control)


def test_ipv6_is_switched_on_where_the_host_disables_it_by_default(fw_box: Sandbox) -> None:
    # net.ipv6.conf.default.disable_ipv6=1: every new interface (bridge, veth ends) comes without IPv6.
    box = fw_box
    a, b = box.container(), box.container()
    for ns in (box.host, a, b):
        ns.run("sysctl", "-w", "net.ipv6.conf.default.disable_ipv6=1", check=True)
    res_a = attach(box, a, dual_conf(box))
    res_b = attach(box, b, dual_conf(box))
    for ns, dev in ((a, "eth0"), (box.host, "nkbr0")):
        assert ns.run("sysctl", "-n", f"net.ipv6.conf.{dev}.disable_ipv6").stdout.strip() == "0"
    assert a.ping(v6(res_b)) is not None and a.ping("fd00:20::1") is not None
    assert [ip["address"] for ip in res_a["ips"]] == ["10.20.0.2/24", "fd00:20::2/64"]


def test_a_loopback_only_mapping_holds_its_port(fw_box: Sandbox, servers: list) -> None:
    # No NAT serves [::1] (the proxy does), yet the mapping's rule is there: CHECK sees it, and a
    # clashing mapping on every address is refused instead of finding it stale.
    box = fw_box
    a, b = box.container(), box.container()
    loop = [{"hostPort": 8090, "containerPort": 80, "hostIP": "::1"}]
    res_a = attach(box, a, dual_conf(box), loop)
    servers.append(a.serve("A", 80))
    assert (box.host.ask("tcp", "::1", 8090) or "").startswith("A ")
    conf = dict(dual_conf(box), runtimeConfig={"portMappings": loop}, prevResult=res_a)
    assert box.call("netkit-bridge", "CHECK", conf, a) == (0, None)
    rc, out = box.call("netkit-bridge", "ADD", dict(dual_conf(box), runtimeConfig={"portMappings": [
        {"hostPort": 8090, "containerPort": 80}]}), b)
    assert rc == 1 and out["code"] == 107 and "tcp/::1/8090" in out["details"], out


def test_an_mtu_below_ipv6s_minimum_is_refused_on_a_dual_stack_network(box: Sandbox) -> None:
    c = box.container()
    rc, out = box.call("netkit-bridge", "ADD", dual_conf(box, mtu=1200), c)
    assert rc == 1 and out["code"] == 7 and "at least 1280" in out["msg"], out
    assert c.links() == ["lo"]
    rc, out = box.call("netkit-bridge", "ADD", bridge_conf(box, mtu=1200), c)  # IPv4 alone: fine
    assert rc == 0, out


def test_check_fails_when_the_loopback_proxy_is_gone(fw_box: Sandbox) -> None:
    box = fw_box
    a = box.container()
    res = attach(box, a, dual_conf(box), WEB)
    conf = dict(dual_conf(box), runtimeConfig={"portMappings": WEB}, prevResult=res)
    assert box.call("netkit-bridge", "CHECK", conf, a) == (0, None)
    pid = _proxy_pid(box, a)
    assert pid is not None
    os.kill(pid, 9)  # SIGKILL: it cannot take its record with it
    assert _gone(pid)
    rc, out = box.call("netkit-bridge", "CHECK", conf, a)
    assert rc == 1 and out["code"] == 106 and "proxy" in out["msg"], out  # CHECK_FAILED
    assert box.call("netkit-bridge", "DEL", conf, a) == (0, None)  # takes the stale record too


def test_the_loopback_proxy_survives_running_out_of_descriptors(fw_box: Sandbox, servers: list) -> None:
    # A new UDP client needs a socket of its own: without a descriptor left that datagram is lost,
    # the proxy (and every other client) lives on.
    box = fw_box
    a = box.container()
    attach(box, a, dual_conf(box), [{"hostPort": 8095, "containerPort": 80, "protocol": "udp"}])
    servers.append(a.serve("A", 80))
    pid = _proxy_pid(box, a)
    assert pid is not None
    used = len(os.listdir(f"/proc/{pid}/fd"))
    soft = box.host.run("prlimit", f"--pid={pid}", "--nofile", "-o", "SOFT", "--noheadings", check=True).stdout.strip()
    box.host.run("prlimit", f"--pid={pid}", f"--nofile={used}:", check=True)  # the soft limit
    assert box.host.ask("udp", "::1", 8095, tries=1) is None
    assert _proxy_pid(box, a) == pid
    box.host.run("prlimit", f"--pid={pid}", f"--nofile={soft}:", check=True)
    assert (box.host.ask("udp", "::1", 8095) or "").startswith("A ")
