"""The route keeper in real namespaces: routes to other nodes' pod subnets, replaced when wrong,
removed with their node, refused when unsafe, and never a route it did not make touched."""

from __future__ import annotations

import ipaddress
import json
import logging
import os

import pytest

from netkit.net import netns
from netkit.net.netlink import IPRoute
from netkit.node import daemon, filesource, model, routes, snapshot
from tests.node.conftest import Cluster, ns_path


def _nodes(**cidrs: tuple[str, str]) -> list[model.Node]:
    return [model.make(name, [ip], [cidr]) for name, (ip, cidr) in cidrs.items()]


def _kept(cluster: Cluster, name: str) -> dict[str, str]:
    out = cluster.nodes[name][0].run("ip", "-j", "route", "show", "proto", str(routes.PROTOCOL)).stdout
    return {r["dst"]: r.get("gateway", "") for r in json.loads(out or "[]")}


def _sync(cluster: Cluster, name: str, nodes: list[model.Node]) -> routes.Outcome:
    wants, refused = routes.plan(name, nodes)
    with netns.entered(ns_path(cluster.nodes[name][0])):
        outcome = routes.sync(wants)
    outcome.refused[:0] = refused
    return outcome


def test_routes_to_other_nodes_are_added_replaced_and_removed(cluster: Cluster) -> None:
    nodes = _nodes(n1=("192.168.77.11", "10.244.1.0/24"), n2=("192.168.77.12", "10.244.2.0/24"),
                   n3=("192.168.77.13", "10.244.3.0/24"))
    got = _sync(cluster, "n1", nodes)
    assert not got.refused
    assert len(got.changes) == 2
    assert _kept(cluster, "n1") == {"10.244.2.0/24": "192.168.77.12", "10.244.3.0/24": "192.168.77.13"}
    assert not _sync(cluster, "n1", nodes).changes  # nothing to do twice
    # n3's InternalIP changes: its route is replaced; n2 is deleted: its route goes.
    moved = [nodes[0], model.make("n3", ["192.168.77.14"], ["10.244.3.0/24"])]
    got = _sync(cluster, "n1", moved)
    assert any("replaced" in line for line in got.changes) and any("removed" in line for line in got.changes)
    assert _kept(cluster, "n1") == {"10.244.3.0/24": "192.168.77.14"}
    _sync(cluster, "n1", [nodes[0]])
    assert _kept(cluster, "n1") == {}


def test_a_route_it_did_not_make_is_never_touched_and_an_overlap_is_refused(cluster: Cluster) -> None:
    host = cluster.nodes["n1"][0]
    host.run("ip", "route", "add", "10.244.2.0/25", "via", "192.168.77.12", check=True)  # the admin's
    host.run("ip", "route", "add", "10.0.0.0/8", "via", "192.168.77.1", check=True)  # a corporate/VPN route
    nodes = _nodes(n1=("192.168.77.11", "10.244.1.0/24"), n2=("192.168.77.12", "10.244.2.0/24"),
                   n3=("192.168.77.13", "10.244.9.0/24"))
    got = _sync(cluster, "n1", nodes)
    assert got.refused == ["node n2: podCIDR 10.244.2.0/24 overlaps host route 10.244.2.0/25, not routed"]
    # The broader /8 through a gateway is no obstacle: the /24 wins the lookup.
    assert _kept(cluster, "n1") == {"10.244.9.0/24": "192.168.77.13"}
    assert "via 192.168.77.13" in host.run("ip", "route", "get", "10.244.9.5").stdout
    _sync(cluster, "n1", [])
    routes_now = host.run("ip", "route").stdout
    assert "10.244.2.0/25 via 192.168.77.12" in routes_now and "10.0.0.0/8 via 192.168.77.1" in routes_now


@pytest.mark.parametrize("kind", ["blackhole", "unreachable", "prohibit", "throw"])
def test_a_foreign_route_of_another_type_to_the_same_subnet_is_refused_and_left_alone(
        cluster: Cluster, kind: str) -> None:
    host = cluster.nodes["n1"][0]
    host.run("ip", "route", "add", kind, "10.244.2.0/24", "proto", "static", check=True)
    nodes = _nodes(n2=("192.168.77.12", "10.244.2.0/24"))
    got = _sync(cluster, "n1", nodes)
    assert got.refused == [f"node n2: podCIDR 10.244.2.0/24 overlaps host route {kind} 10.244.2.0/24, not routed"]
    assert not got.changes and _kept(cluster, "n1") == {}
    _sync(cluster, "n1", [])  # the node deleted
    assert f"{kind} 10.244.2.0/24 proto static" in host.run("ip", "route").stdout


def test_a_foreign_route_made_after_the_reading_is_not_overwritten(cluster: Cluster) -> None:
    host = cluster.nodes["n1"][0]
    want = routes.Want(ipaddress.ip_network("10.244.2.0/24"), ipaddress.ip_address("192.168.77.12"), "n2")
    with netns.entered(ns_path(host)):
        with IPRoute() as ipr:
            # The admin's route appears between the reading and the add (the reading is faked empty).
            host.run("ip", "route", "add", "blackhole", "10.244.2.0/24", "proto", "static", check=True)
            real = ipr.get_routes
            ipr.get_routes = lambda **kw: [m for m in real(**kw) if m.get("proto") != 4]  # type: ignore[method-assign]
            got = routes.sync([want], ipr)
    assert len(got.refused) == 1 and got.refused[0].startswith("node n2: route 10.244.2.0/24 via 192.168.77.12: ")
    assert "blackhole 10.244.2.0/24 proto static" in host.run("ip", "route").stdout


def test_a_podcidr_on_a_directly_connected_network_is_refused(cluster: Cluster) -> None:
    host = cluster.nodes["n1"][0]
    host.run("ip", "route", "add", "10.96.0.0/12", "dev", "eth0", check=True)
    got = _sync(cluster, "n1", _nodes(n2=("192.168.77.12", "10.100.2.0/24")))
    assert got.refused == ["node n2: podCIDR 10.100.2.0/24 overlaps host route 10.96.0.0/12, not routed"]
    assert _kept(cluster, "n1") == {}


def test_overlapping_podcidrs_are_refused_for_every_node_that_claims_them() -> None:
    nodes = _nodes(n1=("192.168.77.11", "10.244.1.0/24"), n2=("192.168.77.12", "10.244.2.0/24"),
                   n3=("192.168.77.13", "10.244.2.0/23"), n4=("192.168.77.14", "10.244.1.0/24"),
                   n5=("192.168.77.15", "10.244.5.0/24"))
    wants, refused = routes.plan("n1", nodes)
    assert refused == ["node n2: podCIDR 10.244.2.0/24 overlaps node n3's, not routed",
                       "node n3: podCIDR 10.244.2.0/23 overlaps node n2's, not routed",
                       "node n4: podCIDR 10.244.1.0/24 overlaps node n1's (this node), not routed"]
    assert [(str(w.dst), w.node) for w in wants] == [("10.244.5.0/24", "n5")]


def test_a_gateway_not_on_link_or_a_node_without_subnet_is_refused_in_one_line(cluster: Cluster) -> None:
    nodes = [model.make("n2", ["172.31.0.9"], ["10.244.2.0/24"]), model.make("n3", ["192.168.77.13"], []),
             model.make("n4", ["192.168.77.14"], ["10.244.4.0/24"]),
             model.make("n5", ["192.168.77.11"], ["10.244.5.0/24"])]  # n1's own address
    got = _sync(cluster, "n1", nodes)
    assert got.refused == ["node n3: no podCIDR yet, no route to it",
                           "node n2: InternalIP 172.31.0.9 is not on-link, no route to 10.244.2.0/24",
                           "node n5: InternalIP 192.168.77.11 is this node's own address, no route to 10.244.5.0/24"]
    assert _kept(cluster, "n1") == {"10.244.4.0/24": "192.168.77.14"}
    _sync(cluster, "n1", [])


def test_dual_stack_node_gets_a_route_per_family() -> None:
    node = model.make("n2", ["192.168.77.12", "fd00::12"], ["10.244.2.0/24", "fd10:244:2::/64"])
    wants, refused = routes.plan("n1", [node])
    assert not refused
    assert {(str(w.dst), str(w.via)) for w in wants} == {("10.244.2.0/24", "192.168.77.12"),
                                                         ("fd10:244:2::/64", "fd00::12")}
    assert node.internal_ip(6) == ipaddress.ip_address("fd00::12")


def test_an_unwritable_conf_dir_is_one_line_the_routes_are_still_kept_and_a_fix_converges(
        cluster: Cluster, tmp_path: os.PathLike[str], caplog: pytest.LogCaptureFixture) -> None:
    base = str(tmp_path)
    blocker = os.path.join(base, "net.d")
    with open(blocker, "w", encoding="utf-8") as f:
        f.write("a file where the conf dir should be")
    loop = daemon.Daemon(daemon.Settings("n1", os.path.join(blocker, "sub"), os.path.join(base, "ready")),
                         filesource.FileSource(os.path.join(base, "none")))
    snap = snapshot.from_entries([{"name": "n1", "internalIP": "192.168.77.11", "podCIDRs": ["10.244.1.0/24"]},
                                  {"name": "n2", "internalIP": "192.168.77.12", "podCIDRs": ["10.244.2.0/24"]}])
    caplog.set_level(logging.INFO, logger="netkit.node")
    with netns.entered(ns_path(cluster.nodes["n1"][0])):
        loop.safely(snap)
        loop.safely(snap)
        assert _kept(cluster, "n1") == {"10.244.2.0/24": "192.168.77.12"}
        assert not os.path.exists(os.path.join(base, "ready"))
        os.unlink(blocker)
        loop.safely(snap)
    lines = [r.getMessage() for r in caplog.records]
    assert sum(line.startswith("cannot write ") for line in lines) == 1
    assert os.path.exists(os.path.join(blocker, "sub", "10-netkit.conflist"))
    assert os.path.exists(os.path.join(base, "ready")) and "ready" in lines


def test_dual_stack_routes_are_kept_per_family_in_the_kernel(cluster: Cluster) -> None:
    for i, (host, _) in enumerate(cluster.nodes.values(), start=1):
        host.run("ip", "addr", "add", f"fd00:77::{10 + i}/64", "dev", "eth0", "nodad", check=True)
    node = model.make("n2", ["192.168.77.12", "fd00:77::12"], ["10.244.2.0/24", "fd10:244:2::/64"])
    got = _sync(cluster, "n1", [node])
    assert not got.refused and len(got.changes) == 2
    host = cluster.nodes["n1"][0]
    out = host.run("ip", "-6", "-j", "route", "show", "proto", str(routes.PROTOCOL)).stdout
    assert [(r["dst"], r["gateway"]) for r in json.loads(out)] == [("fd10:244:2::/64", "fd00:77::12")]
    _sync(cluster, "n1", [])
    assert host.run("ip", "-6", "route", "show", "proto", str(routes.PROTOCOL)).stdout.strip() == ""
