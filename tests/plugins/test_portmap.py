"""netkit-portmap (and netkit-bridge's own ipMasq and portMappings) on real namespaces, both backends.

Topology per test: the sandbox host has a bridge with containers and an uplink to another machine
X (10.30.0.2); the host's addresses on the uplink are 10.30.0.1 and 10.30.0.11.
"""

from __future__ import annotations

import ipaddress
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.sandbox import FULL, Namespace, Sandbox, bridge_conf, serve_in

HOST, HOST2, MACHINE = "10.30.0.1", "10.30.0.11", "10.30.0.2"


def _portmap_conf(box: Sandbox, mappings: list[dict[str, Any]], prev: dict | None = None,
                  plugin: str = "netkit-portmap", **extra: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {"cniVersion": "1.0.0", "name": "testnet", "type": plugin,
                            "capabilities": {"portMappings": True}, "runtimeConfig": {"portMappings": mappings}}
    if prev is not None:
        conf["prevResult"] = prev
    conf.update(extra)
    return conf


def _attach(box: Sandbox, c: Namespace, mappings: list[dict[str, Any]], portmap: str = "netkit-portmap",
            bridge: str = "netkit-bridge", **bridge_extra: Any) -> dict:
    bridge_extra.setdefault("hairpinMode", True)  # as podman writes it: hairpin needs it
    rc, prev = box.call(bridge, "ADD", bridge_conf(box, plugin_type=bridge, **bridge_extra), c)
    assert rc == 0, prev
    rc, out = box.call(portmap, "ADD", _portmap_conf(box, mappings, prev, plugin=portmap), c)
    assert rc == 0, out
    return out


def _detach(box: Sandbox, c: Namespace, mappings: list[dict[str, Any]], prev: dict,
            portmap: str = "netkit-portmap", bridge: str = "netkit-bridge") -> None:
    assert box.call(portmap, "DEL", _portmap_conf(box, mappings, prev, plugin=portmap), c) == (0, None)
    assert box.call(bridge, "DEL", dict(bridge_conf(box, plugin_type=bridge), prevResult=prev), c) == (0, None)


def _ip(result: dict) -> str:
    return str(ipaddress.ip_interface(result["ips"][0]["address"]).ip)


WEB = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
       {"hostPort": 8080, "containerPort": 80, "protocol": "udp"},
       {"hostPort": 8081, "containerPort": 80, "protocol": "tcp", "hostIP": HOST2}]


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_published_port_answers_from_every_place(fw_box: Sandbox, servers: list, proto: str) -> None:
    box = fw_box
    x = box.machine([HOST, HOST2], MACHINE)
    a, b = box.container(), box.container()
    res_a = _attach(box, a, WEB)
    rc, _ = box.call("netkit-bridge", "ADD", bridge_conf(box), b)
    assert rc == 0
    servers.append(a.serve("A", 80))
    assert x.ask(proto, HOST, 8080) == f"A {MACHINE}"                       # another machine -> host
    assert (box.host.ask(proto, HOST, 8080) or "").startswith("A ")          # host -> its own address
    assert (box.host.ask(proto, "127.0.0.1", 8080) or "").startswith("A ")   # host -> localhost
    assert (b.ask(proto, HOST, 8080) or "").startswith("A ")                 # same-bridge container -> host
    assert (a.ask(proto, HOST, 8080) or "").startswith("A ")                 # hairpin
    assert a.ask(proto, _ip(res_a), 80) is not None


def test_host_ip_binds_the_mapping_to_one_address(fw_box: Sandbox, servers: list) -> None:
    x = fw_box.machine([HOST, HOST2], MACHINE)
    a = fw_box.container()
    _attach(fw_box, a, WEB)
    servers.append(a.serve("A", 80))
    tcp = x.ask("tcp", HOST2, 8081)
    assert tcp == f"A {MACHINE}"
    assert x.unanswered("tcp", HOST, 8081, control=tcp)  # control: the same port on the other address
    udp = x.ask("udp", HOST2, 8080)
    assert udp == f"A {MACHINE}"
    assert x.unanswered("udp", HOST2, 8081, control=udp)  # only tcp was mapped on 8081; control: udp 8080


def test_mappings_of_two_containers_and_the_rules_go_with_del(fw_box: Sandbox, servers: list) -> None:
    x = fw_box.machine([HOST, HOST2], MACHINE)
    a, b = fw_box.container(), fw_box.container()
    ma, mb = [{"hostPort": 8080, "containerPort": 80}], [{"hostPort": 9090, "containerPort": 80}]
    res_a, res_b = _attach(fw_box, a, ma), _attach(fw_box, b, mb)
    servers += [a.serve("A", 80), b.serve("B", 80)]
    before = x.ask("tcp", HOST, 8080)
    assert (before or "").startswith("A ") and (x.ask("tcp", HOST, 9090) or "").startswith("B ")
    _detach(fw_box, a, ma, res_a)
    assert x.unanswered("tcp", HOST, 8080, control=before)  # control: the same port answered before the DEL
    assert (x.ask("tcp", HOST, 9090) or "").startswith("B ")
    _detach(fw_box, b, mb, res_b)
    assert fw_box.group_chains() == []


def test_port_already_published_is_refused_and_nothing_remains(fw_box: Sandbox, servers: list) -> None:
    x = fw_box.machine([HOST, HOST2], MACHINE)
    a, b = fw_box.container(), fw_box.container()
    _attach(fw_box, a, [{"hostPort": 8080, "containerPort": 80}])
    before = fw_box.group_chains()
    rc, prev_b = fw_box.call("netkit-bridge", "ADD", bridge_conf(fw_box), b)
    for clash in ({"hostPort": 8080, "containerPort": 81}, {"hostPort": 8080, "containerPort": 81, "hostIP": HOST}):
        rc, out = fw_box.call("netkit-portmap", "ADD", _portmap_conf(fw_box, [clash], prev_b), b)
        assert rc == 1 and out["code"] == 107 and "already allocated" in out["msg"]
    assert fw_box.group_chains() == before
    servers.append(a.serve("A", 80))
    assert (x.ask("tcp", HOST, 8080) or "").startswith("A ")
    # Another protocol or port is no conflict.
    rc, out = fw_box.call("netkit-portmap", "ADD", _portmap_conf(
        fw_box, [{"hostPort": 8080, "containerPort": 80, "protocol": "udp"}], prev_b), b)
    assert rc == 0, out


def test_udp_flows_follow_mapping_changes(fw_box: Sandbox, servers: list) -> None:
    # The same client 5-tuple before the mapping, to A, then to B after A's DEL: stale conntrack
    # entries must not keep sending it where it went before.
    x = fw_box.machine([HOST, HOST2], MACHINE)
    a, b = fw_box.container(), fw_box.container()
    servers += [a.serve("A", 80), b.serve("B", 80), fw_box.host.serve("H", 9998)]
    m = [{"hostPort": 9999, "containerPort": 80, "protocol": "udp"}]
    host = x.ask("udp", HOST, 9998)  # control: X's datagrams reach the host
    assert host == f"H {MACHINE}"
    assert x.unanswered("udp", HOST, 9999, sport=40000, control=host)  # nothing published yet: a plain entry
    res_a = _attach(fw_box, a, m)
    assert x.ask("udp", HOST, 9999, sport=40000) == f"A {MACHINE}"
    _detach(fw_box, a, m, res_a)
    _attach(fw_box, b, m)
    assert x.ask("udp", HOST, 9999, sport=40000) == f"B {MACHINE}"


def test_check_verifies_every_rule(fw_box: Sandbox) -> None:
    a = fw_box.container()
    res = _attach(fw_box, a, WEB)
    conf = _portmap_conf(fw_box, WEB, res)
    assert fw_box.call("netkit-portmap", "CHECK", conf, a) == (0, None)
    chain = next(c for c in fw_box.group_chains() if c.startswith("NK-D-") and not c.endswith("-S"))
    if fw_box.firewall == "nftables":
        fw_box.host.run("nft", "flush", "chain", "inet", "netkit", chain, check=True)
    else:
        fw_box.host.run("iptables-legacy", "-t", "nat", "-F", chain, check=True)
    rc, out = fw_box.call("netkit-portmap", "CHECK", conf, a)
    assert rc == 1 and out["code"] == 106


def test_del_after_container_address_removed_leaves_no_rule(fw_box: Sandbox) -> None:
    a = fw_box.container()
    res = _attach(fw_box, a, WEB, ipMasq=True)
    assert any(c.startswith("NK-M-") for c in fw_box.group_chains())
    a.run("ip", "addr", "flush", "dev", "eth0", check=True)
    # DEL without prevResult, as after a runtime lost its cache.
    assert fw_box.call("netkit-portmap", "DEL", _portmap_conf(fw_box, WEB), a) == (0, None)
    assert fw_box.call("netkit-bridge", "DEL", bridge_conf(fw_box, ipMasq=True), a) == (0, None)
    assert fw_box.group_chains() == []
    assert res["ips"]


@pytest.mark.parametrize("n", [16, *([64] if FULL else [])])
def test_parallel_adds_publish_every_port(fw_box: Sandbox, servers: list, n: int) -> None:
    # Runtimes start pods in parallel (kubelet, podman): every one of n ports published by ADDs
    # running at once answers, from another machine and from the host's 127.0.0.1.
    x = fw_box.machine([HOST, HOST2], MACHINE)
    containers = [fw_box.container() for _ in range(n)]

    def add(i: int) -> tuple[int, int | None, Any]:
        c = containers[i]
        rc, prev = fw_box.call("netkit-bridge", "ADD", bridge_conf(fw_box, hairpinMode=True), c)
        if rc != 0:
            return rc, None, prev
        rc_pm, out = fw_box.call("netkit-portmap", "ADD", _portmap_conf(
            fw_box, [{"hostPort": 7000 + i, "containerPort": 80}], prev), c)
        return rc, rc_pm, out

    with ThreadPoolExecutor(n) as pool:
        added = list(pool.map(add, range(n)))
    statuses = " ".join(f"C{i}:{rc}/{rc_pm}" for i, (rc, rc_pm, _) in enumerate(added))
    print(f"exit status of every ADD (bridge/portmap): {statuses}")
    assert all(rc == 0 and rc_pm == 0 for rc, rc_pm, _ in added), [a for a in added if a[:2] != (0, 0)]
    assert len([c for c in fw_box.group_chains() if c.startswith("NK-D-") and not c.endswith("-S")]) == n
    servers.append(serve_in({f"C{i}": c for i, c in enumerate(containers)}, 80))
    ports = {7000 + i: f"C{i} " for i in range(n)}
    for client, addr in ((x, HOST), (fw_box.host, "127.0.0.1")):
        answers = client.ask_each(addr, list(ports))
        silent = [p for p, name in ports.items() if not (answers.get(p) or "").startswith(name)]
        if silent:
            pytest.fail("\n".join(_unanswered(fw_box, client, addr, containers[p - 7000], p, answers.get(p))
                                  for p in silent))


def test_add_switches_on_forwarding_whose_copy_to_the_interfaces_was_lost(fw_box: Sandbox, servers: list) -> None:
    # What concurrent writers of ip_forward can leave (netkit.net.forwarding): the switch reads 1,
    # the interfaces and the default do not forward.  A published port must answer all the same.
    x = fw_box.machine([HOST, HOST2], MACHINE)
    fw_box.host.run("sysctl", "-w", "net.ipv4.ip_forward=1", check=True)
    fw_box.host.run("sysctl", "-w", "net.ipv4.conf.default.forwarding=0", "net.ipv4.conf.uplink0.forwarding=0",
                    check=True)
    a = fw_box.container()
    _attach(fw_box, a, [{"hostPort": 8080, "containerPort": 80}])
    servers.append(a.serve("A", 80))
    assert x.ask_each(HOST, [8080]) == {8080: f"A {MACHINE}"}


def _unanswered(box: Sandbox, client: Namespace, addr: str, c: Namespace, port: int, answer: str | None) -> str:
    """What to know when a published port did not answer: which hop failed, and the state behind it."""
    caddr = c.addresses("eth0")
    rules = (box.host.run("nft", "-a", "list", "table", "inet", "netkit").stdout if box.firewall == "nftables"
             else box.host.run("iptables-legacy-save", "-t", "nat").stdout)
    lines = [f"{addr}:{port} answered {answer!r}; container eth0 {caddr}",
             f"again: {client.ask_each(addr, [port])}; from the host to the port: "
             f"{box.host.ask_each(HOST, [port])}; from the host straight to the container: "
             f"{box.host.ask_each(caddr[0].split('/')[0], [80]) if caddr else '-'}",
             "host neigh:\n" + box.host.run("ip", "neigh").stdout,
             "container neigh/routes:\n" + c.run("ip", "neigh").stdout + c.run("ip", "route").stdout,
             "rules:\n" + rules]
    return "\n".join(lines)


def test_gc_removes_rules_of_attachments_not_in_the_valid_list(fw_box: Sandbox) -> None:
    a, b = fw_box.container(), fw_box.container()
    _attach(fw_box, a, [{"hostPort": 8080, "containerPort": 80}], ipMasq=True)
    _attach(fw_box, b, [{"hostPort": 8081, "containerPort": 80}], ipMasq=True)
    assert len(fw_box.group_chains()) == 6
    gc = _portmap_conf(fw_box, [], cniVersion="1.1.0",
                       **{"cni.dev/valid-attachments": [{"containerID": a.name, "ifname": "eth0"}]})
    assert fw_box.call("netkit-portmap", "GC", gc) == (0, None)
    assert len(fw_box.group_chains()) == 3


def test_ip_masq_hides_the_container_outside_its_subnet_only(fw_box: Sandbox, servers: list) -> None:
    x = fw_box.machine([HOST, HOST2], MACHINE)
    a, b = fw_box.container(), fw_box.container()
    for c in (a, b):
        rc, out = fw_box.call("netkit-bridge", "ADD", bridge_conf(fw_box, ipMasq=True, isDefaultGateway=True), c)
        assert rc == 0, out
    servers += [x.serve("X", 5000), b.serve("B", 5000)]
    assert a.ask("tcp", MACHINE, 5000) == f"X {HOST}"      # masqueraded to the host's address
    assert a.ask("tcp", "10.20.0.3", 5000) == "B 10.20.0.2"  # not within the subnet


def test_bridge_publishes_ports_itself_with_the_capability(fw_box: Sandbox, servers: list) -> None:
    x = fw_box.machine([HOST, HOST2], MACHINE)
    a = fw_box.container()
    conf = bridge_conf(fw_box, ipMasq=True, capabilities={"portMappings": True},
                       runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80}]})
    rc, res = fw_box.call("netkit-bridge", "ADD", conf, a)
    assert rc == 0, res
    servers.append(a.serve("A", 80))
    assert x.ask("tcp", HOST, 8080) == f"A {MACHINE}"
    assert fw_box.call("netkit-bridge", "CHECK", dict(conf, prevResult=res), a) == (0, None)
    before = x.ask("tcp", HOST, 8080)
    assert fw_box.call("netkit-bridge", "DEL", conf, a) == (0, None)
    assert x.unanswered("tcp", HOST, 8080, control=before) and fw_box.group_chains() == []


def test_failed_bridge_add_after_firewall_rolls_back_rules(fw_box: Sandbox) -> None:
    a, b = fw_box.container(), fw_box.container()
    publish = {"capabilities": {"portMappings": True},
               "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80}]}}
    rc, _ = fw_box.call("netkit-bridge", "ADD", bridge_conf(fw_box, ipMasq=True, **publish), a)
    assert rc == 0
    before = fw_box.group_chains()
    rc, out = fw_box.call("netkit-bridge", "ADD", bridge_conf(fw_box, ipMasq=True, **publish), b)
    assert rc == 1 and out["code"] == 107
    assert fw_box.group_chains() == before and b.links() == ["lo"] and len(fw_box.leases("testnet")) == 1


def test_reference_bridge_with_netkit_portmap(fw_box: Sandbox, servers: list, reference_plugins: str) -> None:
    x = fw_box.machine([HOST, HOST2], MACHINE)
    a = fw_box.container()
    m = [{"hostPort": 8080, "containerPort": 80}]
    res = _attach(fw_box, a, m, bridge="bridge")
    servers.append(a.serve("A", 80))
    assert x.ask("tcp", HOST, 8080) == f"A {MACHINE}"
    _detach(fw_box, a, m, res, bridge="bridge")
    assert fw_box.group_chains() == []


def test_netkit_bridge_with_reference_portmap(box: Sandbox, servers: list, reference_plugins: str) -> None:
    # The reference portmap writes through iptables (nft here): run it only with netkit's own
    # rules on the same backend, never both.
    x = box.machine([HOST, HOST2], MACHINE)
    a = box.container()
    m = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]  # the reference needs the protocol
    res = _attach(box, a, m, portmap="portmap")
    servers.append(a.serve("A", 80))
    before = x.ask("tcp", HOST, 8080)
    assert before == f"A {MACHINE}"
    _detach(box, a, m, res, portmap="portmap")
    assert x.unanswered("tcp", HOST, 8080, control=before)  # control: the same port answered before the DEL


def test_del_succeeds_whatever_port_mappings_it_is_given(box: Sandbox) -> None:
    # Found by the full fuzz: a bridge without the portMappings capability ignores them on ADD, so
    # its DEL must not refuse them either (DEL is idempotent and never fails on input ADD accepted).
    a = box.container()
    bad = {"portMappings": [None, {"hostPort": 8081, "containerPort": 81}]}
    conf = bridge_conf(box, capabilities={}, runtimeConfig=bad)
    assert box.call("netkit-bridge", "ADD", conf, a)[0] == 0
    assert box.call("netkit-bridge", "DEL", conf, a) == (0, None)
    assert box.group_chains() == [] and box.leases("testnet") == []


def test_forward_drop_in_another_table_fails_add_with_advice(box: Sandbox) -> None:
    box.firewall = "nftables"
    box.host.run("nft", "add", "table", "ip", "filter", check=True)
    box.host.run("nft", "add", "chain", "ip", "filter", "FORWARD",
                 "{ type filter hook forward priority 0; policy drop; }", check=True)
    a = box.container()
    rc, prev = box.call("netkit-bridge", "ADD", bridge_conf(box), a)
    rc, out = box.call("netkit-portmap", "ADD", _portmap_conf(box, [{"hostPort": 8080, "containerPort": 80}], prev), a)
    assert rc == 1 and out["code"] == 108 and "ip filter FORWARD" in out["details"]
    assert box.group_chains() == []


def test_a_drop_policy_appearing_between_two_adds_is_seen_by_the_second(box: Sandbox) -> None:
    # Through the agent the first ADD's reading of other tables is kept; anything changing the
    # ruleset since (here another table's chain) must make the next ADD read again.
    box.firewall = "nftables"
    a, b = box.container(), box.container()
    _attach(box, a, [{"hostPort": 8080, "containerPort": 80}])
    box.host.run("nft", "add", "table", "ip", "filter", check=True)
    box.host.run("nft", "add", "chain", "ip", "filter", "FORWARD",
                 "{ type filter hook forward priority 0; policy drop; }", check=True)
    rc, prev = box.call("netkit-bridge", "ADD", bridge_conf(box), b)
    rc, out = box.call("netkit-portmap", "ADD", _portmap_conf(box, [{"hostPort": 8081, "containerPort": 80}], prev), b)
    assert rc == 1 and out["code"] == 108, out
    # And a policy turned back to accept is seen too.
    box.host.run("nft", "add", "chain", "ip", "filter", "FORWARD", "{ policy accept; }", check=True)
    rc, out = box.call("netkit-portmap", "ADD", _portmap_conf(box, [{"hostPort": 8081, "containerPort": 80}], prev), b)
    assert rc == 0, out


def _two_networks(box: Sandbox, **extra: Any) -> tuple[Namespace, Namespace, dict, dict]:
    a, b = box.container(), box.container()
    rc, res_a = box.call("netkit-bridge", "ADD", bridge_conf(box, **extra), a)
    assert rc == 0, res_a
    other = bridge_conf(box, name="othernet", subnet="10.21.0.0/24", bridge="nkbr1", **extra)
    rc, res_b = box.call("netkit-bridge", "ADD", other, b)
    assert rc == 0, res_b
    return a, b, res_a, res_b


def test_networks_are_isolated_but_published_ports_reach_across(fw_box: Sandbox, servers: list) -> None:
    fw_box.machine([HOST, HOST2], MACHINE)
    a, b, res_a, res_b = _two_networks(fw_box)
    servers += [a.serve("A", 80), b.serve("B", 80)]
    # Controls: each container reaches the host, and the host reaches both servers: only the
    # forwarding between the two bridges is left to block.
    from_a, from_b = a.ping("10.20.0.1"), b.ping("10.21.0.1")
    assert from_a and from_b
    assert (fw_box.host.ask("tcp", _ip(res_a), 80) or "").startswith("A ")
    assert (fw_box.host.ask("tcp", _ip(res_b), 80) or "").startswith("B ")
    assert a.unanswered("tcp", _ip(res_b), 80, control=from_a) and b.unanswered("tcp", _ip(res_a), 80, control=from_b)
    assert a.unreachable(_ip(res_b), control=from_a)
    conf_b = _portmap_conf(fw_box, [{"hostPort": 8080, "containerPort": 80}], res_b, name="othernet")
    assert fw_box.call("netkit-portmap", "ADD", conf_b, b)[0] == 0
    assert (a.ask("tcp", HOST, 8080) or "").startswith("B ")


def test_isolate_false_lets_networks_talk(fw_box: Sandbox, servers: list) -> None:
    a, b, res_a, res_b = _two_networks(fw_box, isolate=False)
    servers.append(b.serve("B", 80))
    assert a.ask("tcp", _ip(res_b), 80) == f"B {_ip(res_a)}"


@pytest.mark.parametrize("backend, br_netfilter", [("nftables", "1"), ("nftables", "0"), ("iptables", "1")])
def test_icc_false_separates_containers_of_one_bridge(box: Sandbox, servers: list, backend: str,
                                                      br_netfilter: str) -> None:
    # With br_netfilter, switched frames pass the IP forward hook; without, only a bridge-family
    # table (nftables) sees them: both ways must hold.
    box.firewall = backend
    box.host.run("sysctl", "-w", f"net.bridge.bridge-nf-call-iptables={br_netfilter}", check=True)
    box.machine([HOST, HOST2], MACHINE)
    a, b = box.container(), box.container()
    conf = bridge_conf(box, icc=False, hairpinMode=True)
    res_a = box.call("netkit-bridge", "ADD", conf, a)[1]
    res_b = box.call("netkit-bridge", "ADD", conf, b)[1]
    servers.append(b.serve("B", 80))
    # Controls: A reaches its gateway over the bridge, and the host reaches B's server.
    gateway = a.ping("10.20.0.1")
    assert gateway and b.ping("10.20.0.1")
    assert (box.host.ask("tcp", _ip(res_b), 80) or "").startswith("B ")
    assert a.unanswered("tcp", _ip(res_b), 80, control=gateway)
    assert box.call("netkit-portmap", "ADD", _portmap_conf(box, [{"hostPort": 8080, "containerPort": 80}], res_b),
                    b)[0] == 0
    assert (a.ask("tcp", HOST, 8080) or "").startswith("B ")
    assert box.call("netkit-bridge", "ADD", bridge_conf(box, icc=True, hairpinMode=True), box.container())[0] == 0
    assert a.ask("tcp", _ip(res_b), 80) == f"B {_ip(res_a)}"  # switching icc back on takes effect


def test_icc_false_without_br_netfilter_on_iptables_is_a_clear_error(box: Sandbox) -> None:
    box.firewall = "iptables"
    box.host.run("sysctl", "-w", "net.bridge.bridge-nf-call-iptables=0", check=True)
    a = box.container()
    rc, out = box.call("netkit-bridge", "ADD", bridge_conf(box, icc=False), a)
    assert rc == 1 and out["code"] == 7 and "br_netfilter" in out["msg"]
    assert a.links() == ["lo"] and box.leases("testnet") == []
