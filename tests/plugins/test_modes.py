"""netkit-none, netkit-host and netkit-container (Docker's other network modes) on real namespaces."""

from __future__ import annotations

import json

import pytest

from tests.sandbox import Namespace, Sandbox, bridge_conf, ip

NONE = {"cniVersion": "1.0.0", "name": "none", "type": "netkit-none"}
HOST = {"cniVersion": "1.0.0", "name": "host", "type": "netkit-host"}


def _link(ns: Namespace, name: str) -> dict:
    return json.loads(ns.run("ip", "-j", "link", "show", name, check=True).stdout)[0]


def _joined(owner: Namespace) -> dict:
    return {"cniVersion": "1.0.0", "name": "joined", "type": "netkit-container", "container": owner.path}


def _host_uplink(box: Sandbox) -> str:
    """A veth with 10.99.0.2/24 and a default route via 10.99.0.1 in the sandbox host; returns its MAC."""
    box.host.run("ip", "link", "add", "nkup0", "type", "veth", "peer", "name", "nkup1", check=True)
    box.host.run("ip", "addr", "add", "10.99.0.2/24", "dev", "nkup0", check=True)
    box.host.run("ip", "link", "set", "nkup0", "up", check=True)
    box.host.run("ip", "link", "set", "nkup1", "up", check=True)
    box.host.run("ip", "route", "add", "default", "via", "10.99.0.1", check=True)
    return _link(box.host, "nkup0")["address"]


# --- netkit-none -------------------------------------------------------------------------------

def test_none_add_gives_only_lo_up(box: Sandbox) -> None:
    c = box.container()
    c.run("ip", "link", "set", "lo", "down", check=True)
    rc, out = box.call("netkit-none", "ADD", NONE, c)
    assert rc == 0, out
    assert out["interfaces"] == [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": c.path}]
    assert {"address": "127.0.0.1/8", "interface": 0} in out["ips"]
    assert all(ip["interface"] == 0 for ip in out["ips"])
    assert "routes" not in out
    assert c.links() == ["lo"]
    assert "UP" in _link(c, "lo")["flags"]
    assert c.ping("127.0.0.1")


def test_none_check_del_gc_status(box: Sandbox) -> None:
    c = box.container()
    rc, out = box.call("netkit-none", "ADD", NONE, c)
    assert rc == 0, out
    assert box.call("netkit-none", "CHECK", dict(NONE, prevResult=out), c) == (0, None)
    assert box.call("netkit-none", "DEL", dict(NONE, prevResult=out), c) == (0, None)
    assert "UP" in _link(c, "lo")["flags"]  # nothing undone: lo was the namespace's before ADD
    c.run("ip", "link", "set", "lo", "down", check=True)
    rc, out = box.call("netkit-none", "CHECK", NONE, c)
    assert rc == 1 and out["code"] == 106
    assert box.call("netkit-none", "DEL", NONE, container_id="gone", netns="/nonexistent") == (0, None)
    assert box.call("netkit-none", "DEL", NONE, container_id="gone") == (0, None)  # no CNI_NETNS at all


# --- netkit-host -------------------------------------------------------------------------------

@pytest.mark.parametrize("own", ["sandbox host path", "/proc/self/ns/net"])
def test_host_add_reports_the_hosts_interfaces_addresses_and_default_route(box: Sandbox, own: str) -> None:
    mac = _host_uplink(box)
    path = box.host.path if own == "sandbox host path" else own
    rc, out = box.call("netkit-host", "ADD", HOST, netns=path, container_id="hostmode")
    assert rc == 0, out
    names = [i["name"] for i in out["interfaces"]]
    assert set(names) == set(box.host.links()) and {"lo", "nkup0", "nkup1"} <= set(names)
    assert all("sandbox" not in i for i in out["interfaces"])
    up = names.index("nkup0")
    assert out["interfaces"][up]["mac"] == mac
    assert {"address": "10.99.0.2/24", "interface": up, "gateway": "10.99.0.1"} in out["ips"]
    assert not any(ip["address"].startswith(("127.", "::1/", "fe80:")) for ip in out["ips"])  # global only
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.99.0.1"}]


def test_host_refuses_any_other_namespace(box: Sandbox) -> None:
    c = box.container()
    rc, out = box.call("netkit-host", "ADD", HOST, c)
    assert rc == 1 and out["code"] == 4
    assert "not the host's network namespace" in out["msg"] and c.path in out["details"]
    rc, out = box.call("netkit-host", "ADD", HOST, netns="/nonexistent", container_id="x")
    assert rc == 1 and out["code"] == 4 and "does not exist" in out["details"]
    assert c.links() == ["lo"]  # nothing done to the container


def _addr_set(box: Sandbox) -> set[tuple[str, str]]:
    links = json.loads(box.host.run("ip", "-j", "addr", "show").stdout)
    return {(link["ifname"], f"{a['local']}/{a['prefixlen']}") for link in links for a in link["addr_info"] if "local" in a}


def test_host_check_and_del_leave_the_host_alone(box: Sandbox) -> None:
    _host_uplink(box)
    before = _addr_set(box)
    rc, out = box.call("netkit-host", "ADD", HOST, netns=box.host.path, container_id="hostmode")
    assert rc == 0, out
    check = dict(HOST, prevResult=out)
    assert box.call("netkit-host", "CHECK", check, netns=box.host.path, container_id="hostmode") == (0, None)
    c = box.container()
    rc, err = box.call("netkit-host", "CHECK", check, c)
    assert rc == 1 and err["code"] == 106
    assert box.call("netkit-host", "DEL", check, netns=box.host.path, container_id="hostmode") == (0, None)
    assert box.call("netkit-host", "DEL", HOST, container_id="hostmode") == (0, None)
    assert _addr_set(box) == before  # lifetimes and DAD flags change by themselves: compare addresses
    assert box.host.addresses("nkup0") == ["10.99.0.2/24"]
    assert "default via 10.99.0.1" in box.host.run("ip", "route", "show", "default").stdout


# --- netkit-container --------------------------------------------------------------------------

def _owner_on_bridge(box: Sandbox) -> tuple[Namespace, dict]:
    owner = box.container()
    rc, out = box.call("netkit-bridge", "ADD", bridge_conf(box), owner)
    assert rc == 0, out
    return owner, out


def test_container_add_reports_the_owners_network(box: Sandbox) -> None:
    owner, bridged = _owner_on_bridge(box)
    rc, out = box.call("netkit-container", "ADD", _joined(owner), netns=owner.path, container_id="joiner")
    assert rc == 0, out
    names = [i["name"] for i in out["interfaces"]]
    assert sorted(names) == ["eth0", "lo"]
    assert all(i["sandbox"] == owner.path for i in out["interfaces"])
    eth0 = names.index("eth0")
    assert out["interfaces"][eth0]["mac"] == bridged["interfaces"][2]["mac"]
    assert out["ips"] == [{"address": "10.20.0.2/24", "interface": eth0, "gateway": "10.20.0.1"}]
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.20.0.1"}]
    assert sorted(owner.links()) == ["eth0", "lo"] and owner.addresses("eth0") == ["10.20.0.2/24"]
    check = dict(_joined(owner), prevResult=out)
    assert box.call("netkit-container", "CHECK", check, netns=owner.path, container_id="joiner") == (0, None)


def test_container_check_fails_when_the_owner_is_gone_and_del_still_succeeds(box: Sandbox) -> None:
    owner, _ = _owner_on_bridge(box)
    rc, out = box.call("netkit-container", "ADD", _joined(owner), netns=owner.path, container_id="joiner")
    assert rc == 0, out
    check = dict(_joined(owner), prevResult=out)
    ip("netns", "del", owner.name)
    rc, err = box.call("netkit-container", "CHECK", check, netns=owner.path, container_id="joiner")
    assert rc == 1 and err["code"] == 106 and "gone" in err["msg"]
    assert box.call("netkit-container", "DEL", check, netns=owner.path, container_id="joiner") == (0, None)
    assert box.call("netkit-container", "DEL", _joined(owner), container_id="joiner") == (0, None)
    rc, err = box.call("netkit-container", "ADD", _joined(owner), netns=owner.path, container_id="joiner")
    assert rc == 1 and err["code"] == 3
    assert box.call("netkit-bridge", "DEL", bridge_conf(box), owner) == (0, None)


def test_container_check_fails_when_the_owner_lost_its_interface(box: Sandbox) -> None:
    owner, _ = _owner_on_bridge(box)
    rc, out = box.call("netkit-container", "ADD", _joined(owner), netns=owner.path, container_id="joiner")
    assert rc == 0, out
    assert box.call("netkit-bridge", "DEL", bridge_conf(box), owner) == (0, None)
    rc, err = box.call("netkit-container", "CHECK", dict(_joined(owner), prevResult=out), netns=owner.path,
                       container_id="joiner")
    assert rc == 1 and err["code"] == 106 and "eth0" in err["details"]


def test_container_refuses_a_cni_netns_other_than_the_owners(box: Sandbox) -> None:
    owner, _ = _owner_on_bridge(box)
    other = box.container()
    rc, err = box.call("netkit-container", "ADD", _joined(owner), other)
    assert rc == 1 and err["code"] == 4
    assert "owner" in err["msg"] and other.path in err["details"] and owner.path in err["details"]
    rc, err = box.call("netkit-container", "ADD", _joined(owner), netns=box.host.path, container_id="joiner")
    assert rc == 1 and err["code"] == 4
    rc, err = box.call("netkit-container", "CHECK", _joined(owner), other)
    assert rc == 1 and err["code"] == 106
    assert other.links() == ["lo"]


@pytest.mark.parametrize("value", [None, 42, "", ["/run/netns/x"], "run/netns/relative", "/etc/hostname"])
def test_container_config_key_is_validated(box: Sandbox, value: object) -> None:
    owner = box.container()
    conf = _joined(owner)
    if value is None:
        del conf["container"]
    else:
        conf["container"] = value
    rc, err = box.call("netkit-container", "ADD", conf, netns=owner.path, container_id="joiner")
    assert rc == 1 and err["code"] == 7, err
    assert "container" in err["msg"]


# --- all three ---------------------------------------------------------------------------------

@pytest.mark.parametrize("plugin", ["netkit-none", "netkit-host", "netkit-container"])
def test_gc_status_and_version(box: Sandbox, plugin: str) -> None:
    conf = {"cniVersion": "1.1.0", "name": "modes", "type": plugin, "container": "/run/netns/whatever"}
    assert box.call(plugin, "STATUS", conf) == (0, None)
    assert box.call(plugin, "GC", dict(conf, **{"cni.dev/valid-attachments": []})) == (0, None)
    rc, out = box.call(plugin, "VERSION", {"cniVersion": "1.1.0"})
    assert rc == 0 and "1.1.0" in out["supportedVersions"]


def test_results_in_old_versions(box: Sandbox) -> None:
    _host_uplink(box)
    rc, out = box.call("netkit-host", "ADD", dict(HOST, cniVersion="0.3.1"), netns=box.host.path, container_id="h")
    assert rc == 0 and out["cniVersion"] == "0.3.1"
    up = [i["name"] for i in out["interfaces"]].index("nkup0")
    assert {"address": "10.99.0.2/24", "interface": up, "gateway": "10.99.0.1", "version": "4"} in out["ips"]
