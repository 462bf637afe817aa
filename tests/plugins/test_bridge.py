"""netkit-bridge on real namespaces: attachments, connectivity, every command, failures, interop."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from netkit.cni.version import SUPPORTED
from netkit.launch import native
from netkit.net import names
from tests.sandbox import Namespace, Sandbox, bridge_conf


def _addr(result: dict, index: int = 0) -> str:
    return str(ipaddress.ip_interface(result["ips"][index]["address"]).ip)


def _add(box: Sandbox, conf: dict, container: Namespace, **kw: object) -> dict:
    rc, out = box.call("netkit-bridge", "ADD", conf, container, **kw)
    assert rc == 0, out
    return out


@pytest.mark.parametrize("version", SUPPORTED)
def test_add_result_has_the_shape_of_the_requested_version(box: Sandbox, version: str) -> None:
    c = box.container()
    out = _add(box, bridge_conf(box, version=version), c)
    assert out["cniVersion"] == version
    assert [i["name"] for i in out["interfaces"]] == ["nkbr0", names.host_veth("testnet", c.name, "eth0"), "eth0"]
    assert out["interfaces"][2]["sandbox"] == c.path
    ip = out["ips"][0]
    assert ip["address"] == "10.20.0.2/24" and ip["gateway"] == "10.20.0.1" and ip["interface"] == 2
    if version < "1.0.0":
        assert ip["version"] == "4"
    else:
        assert "version" not in ip
    assert c.addresses("eth0") == ["10.20.0.2/24"]


@pytest.mark.parametrize("version", SUPPORTED)
def test_every_command_at_every_version(box: Sandbox, version: str) -> None:
    c = box.container()
    conf = bridge_conf(box, version=version)
    result = _add(box, conf, c)
    check_conf = dict(conf, prevResult=result)
    rc, out = box.call("netkit-bridge", "CHECK", check_conf, c)
    assert (rc, out and out["code"]) == ((0, None) if version >= "0.4.0" else (1, 1))
    rc, out = box.call("netkit-bridge", "STATUS", conf)
    assert (rc, out and out["code"]) == ((0, None) if version >= "1.1.0" else (1, 1))
    gc_conf = dict(conf, **{"cni.dev/valid-attachments": [{"containerID": c.name, "ifname": "eth0"}]})
    rc, out = box.call("netkit-bridge", "GC", gc_conf)
    assert (rc, out and out["code"]) == ((0, None) if version >= "1.1.0" else (1, 1))
    assert box.leases("testnet") == ["10.20.0.2"]  # GC kept the valid attachment
    rc, out = box.call("netkit-bridge", "VERSION", {"cniVersion": version})
    assert rc == 0 and out["supportedVersions"] == list(SUPPORTED)
    rc, out = box.call("netkit-bridge", "DEL", dict(conf, prevResult=result), c)
    assert (rc, out) == (0, None)
    assert box.leases("testnet") == []
    assert "eth0" not in c.links()


def test_in_process_commands_import_no_netlink_library_and_exec_no_delegate(inproc: Sandbox) -> None:
    """A plugin answering in-process (no agent) pays for every module it imports: bridge ADD, CHECK,
    GC, STATUS and DEL go through netkit's own rtnetlink layer, never pyroute2 or asyncio, and answer
    their netkit-ipam delegate in this process (its allocator imported here, no interpreter exec'd)."""
    c = inproc.container()
    conf = bridge_conf(inproc, version="1.1.0")
    prev = None
    for command in ("ADD", "CHECK", "STATUS", "GC", "DEL"):
        body = dict(conf, prevResult=prev) if command in ("CHECK", "DEL") else conf
        if command == "GC":
            body = dict(conf, **{"cni.dev/valid-attachments": [{"containerID": c.name, "ifname": "eth0"}]})
        exe = os.path.join(inproc.bin_dir, "netkit-bridge")
        if native.read_binary(exe) is not None:
            exe = native.fallback_path(exe)  # the Python launcher a C launcher execs without an agent
        argv = ["ip", "netns", "exec", inproc.host.name, sys.executable, "-IS", "-X", "importtime", exe]
        proc = subprocess.run(argv, input=json.dumps(body).encode(), env=inproc.env(command, c),
                              capture_output=True, timeout=60)
        assert proc.returncode == 0, (command, proc.stdout, proc.stderr[-2000:])
        mods = {line.split("|")[-1].strip() for line in proc.stderr.decode().splitlines()
                if line.startswith("import time:")}
        assert not {m for m in mods if m.startswith(("pyroute2", "asyncio"))}, command
        assert "netkit.net.rawnl" in mods and "netkit.ipam.allocator" in mods, command
        prev = json.loads(proc.stdout) if command == "ADD" else prev
    assert "eth0" not in c.links() and inproc.leases("testnet") == []


def test_two_containers_reach_each_other_and_the_gateway(box: Sandbox) -> None:
    conf = bridge_conf(box, hairpinMode=True)
    a, b = box.container(), box.container()
    addr_a, addr_b = _addr(_add(box, conf, a)), _addr(_add(box, conf, b))
    assert addr_a != addr_b
    assert a.ping("10.20.0.1") and b.ping("10.20.0.1")
    assert a.ping(addr_b) and b.ping(addr_a)
    # TCP: a serves, b connects and reads what a says (and a saw b's own address: nothing rewrote it).
    proc = a.serve("A", 7777)
    try:
        assert b.ask("tcp", addr_a, 7777) == f"A {addr_b}"
    finally:
        proc.kill()
        proc.wait()


def test_default_route_points_at_the_gateway(box: Sandbox) -> None:
    c = box.container()
    _add(box, bridge_conf(box, isDefaultGateway=True), c)
    routes = json.loads(c.run("ip", "-j", "route", "show", "default").stdout)
    assert [(r["gateway"], r["dev"]) for r in routes] == [("10.20.0.1", "eth0")]


def test_host_side_is_on_the_bridge_with_hairpin_and_mtu(box: Sandbox) -> None:
    c = box.container()
    _add(box, bridge_conf(box, hairpinMode=True, mtu=1400), c)
    host = names.host_veth("testnet", c.name, "eth0")
    link = json.loads(box.host.run("ip", "-j", "-d", "link", "show", host).stdout)[0]
    assert link["master"] == "nkbr0" and link["mtu"] == 1400
    assert link["linkinfo"]["info_slave_data"]["hairpin"] is True
    assert link["ifalias"] == f"netkit:testnet:{c.name}:eth0"
    inner = json.loads(c.run("ip", "-j", "link", "show", "eth0").stdout)[0]
    assert inner["mtu"] == 1400
    bridge = json.loads(box.host.run("ip", "-j", "addr", "show", "nkbr0").stdout)[0]
    assert "10.20.0.1" in [a["local"] for a in bridge["addr_info"]]
    assert box.host.run("cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"


def test_requested_mac_and_ip_from_cni_args(box: Sandbox) -> None:
    c = box.container()
    out = _add(box, bridge_conf(box), c, args="IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.20.0.77;MAC=02:00:00:00:00:77")
    assert out["ips"][0]["address"] == "10.20.0.77/24"
    assert out["interfaces"][2]["mac"] == "02:00:00:00:00:77"
    assert json.loads(c.run("ip", "-j", "link", "show", "eth0").stdout)[0]["address"] == "02:00:00:00:00:77"


def test_sixteen_parallel_adds_get_distinct_addresses(box: Sandbox) -> None:
    conf = bridge_conf(box)
    containers = [box.container() for _ in range(16)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda c: box.call("netkit-bridge", "ADD", conf, c), containers))
    assert all(rc == 0 for rc, _ in results), [out for rc, out in results if rc]
    addrs = {_addr(out) for _, out in results}
    assert len(addrs) == 16 and len(box.leases("testnet")) == 16
    assert containers[0].ping(_addr(results[15][1]))


def test_del_twice_and_del_with_vanished_netns_succeed_and_release(box: Sandbox) -> None:
    conf = bridge_conf(box)
    c = box.container()
    _add(box, conf, c)
    host = names.host_veth("testnet", c.name, "eth0")
    assert box.call("netkit-bridge", "DEL", conf, c) == (0, None)
    assert box.call("netkit-bridge", "DEL", conf, c) == (0, None)
    d = box.container()
    _add(box, conf, d)
    subprocess.run(["ip", "netns", "del", d.name], check=True)
    assert box.call("netkit-bridge", "DEL", conf, d) == (0, None)
    assert box.call("netkit-bridge", "DEL", conf, container_id=d.name, netns="") == (0, None)
    assert box.leases("testnet") == []
    assert host not in box.host.links()
    assert names.host_veth("testnet", d.name, "eth0") not in box.host.links()


def _nothing_left(box: Sandbox, c: Namespace) -> None:
    assert box.leases("testnet") == []
    assert [n for n in box.host.links() if n.startswith("nk") and n != "nkbr0"] == []
    assert c.links() == ["lo"]


def test_failed_add_with_exhausted_pool_leaves_nothing(box: Sandbox) -> None:
    conf = bridge_conf(box, subnet="10.20.0.0/30")  # one usable address besides the gateway
    first, second = box.container(), box.container()
    _add(box, conf, first)
    rc, out = box.call("netkit-bridge", "ADD", conf, second)
    assert rc == 1 and out["code"] == 103
    assert second.links() == ["lo"]
    assert box.leases("testnet") == ["10.20.0.2"]
    assert names.host_veth("testnet", second.name, "eth0") not in box.host.links()


def test_failed_add_after_ipam_leaves_nothing(box: Sandbox) -> None:
    # The bridge already carries another address in the subnet: ADD fails after IPAM succeeded.
    c = box.container()
    box.host.run("ip", "link", "add", "nkbr0", "type", "bridge", check=True)
    box.host.run("ip", "addr", "add", "10.20.0.200/24", "dev", "nkbr0", check=True)
    rc, out = box.call("netkit-bridge", "ADD", bridge_conf(box), c)
    assert rc == 1 and out["code"] == 7 and "forceAddress" in out["details"]
    _nothing_left(box, c)
    rc, out = box.call("netkit-bridge", "ADD", bridge_conf(box, forceAddress=True), c)
    assert rc == 0, out
    assert box.host.run("ip", "-4", "-br", "addr", "show", "nkbr0").stdout.split()[2:] == ["10.20.0.1/24"]


def test_existing_non_bridge_link_is_refused_not_taken_over(box: Sandbox) -> None:
    c = box.container()
    box.host.run("ip", "link", "add", "nkbr0", "type", "veth", "peer", "name", "otherpeer", check=True)
    rc, out = box.call("netkit-bridge", "ADD", bridge_conf(box), c)
    assert rc == 1 and out["code"] == 102 and "not a bridge" in out["msg"]
    link = json.loads(box.host.run("ip", "-j", "-d", "link", "show", "nkbr0").stdout)[0]
    assert link["linkinfo"]["info_kind"] == "veth"
    _nothing_left(box, c)


def test_container_interface_name_taken_is_refused(box: Sandbox) -> None:
    c = box.container()
    c.run("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "other", check=True)
    rc, out = box.call("netkit-bridge", "ADD", bridge_conf(box), c)
    assert rc == 1 and out["code"] == 102
    assert box.leases("testnet") == []


@pytest.mark.parametrize("netns, code", [("/nonexistent/netns", 3), ("/etc/hostname", 4)])
def test_bad_netns_gets_an_error_and_leaves_nothing(box: Sandbox, netns: str, code: int) -> None:
    rc, out = box.call("netkit-bridge", "ADD", bridge_conf(box), container_id="x1", netns=netns)
    assert rc == 1 and out["code"] == code
    assert box.leases("testnet") == []


def test_host_namespace_is_refused_as_a_container(box: Sandbox) -> None:
    rc, out = box.call("netkit-bridge", "ADD", bridge_conf(box), container_id="x1", netns=box.host.path)
    assert rc == 1 and out["code"] == 4 and "host" in out["msg"]


@pytest.mark.parametrize("bad", [
    {"bridge": "a-name-longer-than-15"},
    {"mtu": "1500"},
    {"hairpinMode": "yes"},
    {"ipam": {"type": "netkit-ipam", "ranges": [[{"subnet": "10.20.0.0/33"}]]}},
])
def test_bad_config_gets_code_7(box: Sandbox, bad: dict) -> None:
    c = box.container()
    conf = bridge_conf(box)
    conf.update(bad)
    if "ipam" in bad:
        conf["ipam"]["dataDir"] = box.data_dir
    rc, out = box.call("netkit-bridge", "ADD", conf, c)
    assert rc == 1 and out["code"] == 7, out
    assert c.links() == ["lo"]


def test_ifname_over_15_bytes_is_refused(box: Sandbox) -> None:
    c = box.container()
    rc, out = box.call("netkit-bridge", "ADD", bridge_conf(box), c, ifname="a" * 16)
    assert rc == 1 and out["code"] == 4


def test_check_fails_when_address_or_route_or_interface_changes(box: Sandbox) -> None:
    conf = bridge_conf(box)
    c = box.container()
    result = _add(box, conf, c)
    check_conf = dict(conf, prevResult=result)
    assert box.call("netkit-bridge", "CHECK", check_conf, c) == (0, None)
    c.run("ip", "route", "del", "default", check=True)
    rc, out = box.call("netkit-bridge", "CHECK", check_conf, c)
    assert rc == 1 and "route" in out["msg"]
    c.run("ip", "addr", "flush", "dev", "eth0", check=True)
    rc, out = box.call("netkit-bridge", "CHECK", check_conf, c)
    assert rc == 1 and "address" in out["msg"]
    c.run("ip", "link", "del", "eth0", check=True)
    rc, out = box.call("netkit-bridge", "CHECK", check_conf, c)
    assert rc == 1 and out["code"] == 106


def test_gc_removes_only_this_networks_stale_attachments(box: Sandbox) -> None:
    conf = bridge_conf(box, version="1.1.0")
    other = bridge_conf(box, version="1.1.0", name="othernet", subnet="10.21.0.0/24")
    keep, stale, foreign = box.container(), box.container(), box.container()
    _add(box, conf, keep)
    _add(box, conf, stale)
    _add(box, other, foreign)  # same bridge, another network: GC of testnet must not touch it
    gc_conf = dict(conf, **{"cni.dev/valid-attachments": [{"containerID": keep.name, "ifname": "eth0"}]})
    assert box.call("netkit-bridge", "GC", gc_conf) == (0, None)
    links = box.host.links()
    assert names.host_veth("testnet", keep.name, "eth0") in links
    assert names.host_veth("testnet", stale.name, "eth0") not in links
    assert names.host_veth("othernet", foreign.name, "eth0") in links
    assert box.leases("testnet") == ["10.20.0.2"] and box.leases("othernet") == ["10.21.0.2"]


def test_in_process_handler_gives_the_same_result_as_the_executable(box: Sandbox) -> None:
    conf = bridge_conf(box)
    a, b = box.container(), box.container()
    rc_a, out_a = box.handle("netkit-bridge", "ADD", conf, a)
    rc_b, out_b = box.call("netkit-bridge", "ADD", conf, b)
    assert rc_a == rc_b == 0
    assert out_a.keys() == out_b.keys() and len(out_a["interfaces"]) == len(out_b["interfaces"])
    assert a.ping(_addr(out_b))


def test_podman_conflist_works_with_types_replaced(box: Sandbox) -> None:
    # The first plugin of what `podman network create` writes (cniVersion 0.4.0), types replaced;
    # podman sends runtimeConfig only for declared capabilities and IP= in CNI_ARGS for --ip.
    conf = {
        "cniVersion": "0.4.0", "name": "podnet", "type": "netkit-bridge", "bridge": "cni-podman1",
        "isGateway": True, "ipMasq": True, "hairpinMode": True,
        "ipam": {"type": "netkit-ipam", "routes": [{"dst": "0.0.0.0/0"}],
                 "ranges": [[{"subnet": "10.89.0.0/24", "gateway": "10.89.0.1"}]], "dataDir": box.data_dir},
        "capabilities": {"ips": True},
    }
    a, b = box.container(), box.container()
    out = _add(box, conf, a, args="IgnoreUnknown=1;K8S_POD_NAMESPACE=a;K8S_POD_NAME=a;IP=10.89.0.9")
    assert out["cniVersion"] == "0.4.0" and out["ips"][0]["address"] == "10.89.0.9/24"
    out_b = _add(box, dict(conf, runtimeConfig={"ips": ["10.89.0.10/24"]}), b)
    assert out_b["ips"][0]["address"] == "10.89.0.10/24"
    assert a.ping("10.89.0.10") and b.ping("10.89.0.1")
    assert box.call("netkit-bridge", "DEL", dict(conf, prevResult=out), a) == (0, None)
    assert box.call("netkit-bridge", "DEL", dict(conf, prevResult=out_b), b) == (0, None)
    assert box.leases("podnet") == []


def test_netkit_bridge_with_reference_host_local(box: Sandbox, reference_plugins: str) -> None:
    conf = bridge_conf(box, ipam_type="host-local")
    a, b = box.container(), box.container()
    _out_a, out_b = _add(box, conf, a), _add(box, conf, b)
    assert a.ping(_addr(out_b))
    assert len(box.leases("testnet")) == 2
    assert box.call("netkit-bridge", "DEL", conf, a) == (0, None)
    assert box.leases("testnet") == [_addr(out_b)]


def test_reference_bridge_with_netkit_ipam(box: Sandbox, reference_plugins: str) -> None:
    conf = bridge_conf(box, plugin_type="bridge")
    a, b = box.container(), box.container()
    rc_a, out_a = box.call("bridge", "ADD", conf, a)
    rc_b, out_b = box.call("bridge", "ADD", conf, b)
    assert rc_a == rc_b == 0, (out_a, out_b)
    assert a.ping(_addr(out_b)) and b.ping("10.20.0.1")
    assert box.call("bridge", "DEL", conf, a) == (0, None)
    assert box.call("bridge", "DEL", conf, b) == (0, None)
    assert box.leases("testnet") == []


def test_reference_and_netkit_attachments_share_one_bridge(box: Sandbox, reference_plugins: str) -> None:
    a, b = box.container(), box.container()
    rc, out_a = box.call("bridge", "ADD", bridge_conf(box, plugin_type="bridge", ipam_type="host-local"), a)
    assert rc == 0, out_a
    out_b = _add(box, bridge_conf(box), b)
    assert _addr(out_a) != _addr(out_b)  # both IPAMs honour one lease directory and lock
    assert a.ping(_addr(out_b))
