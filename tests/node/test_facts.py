"""The facts and the conflist, without a kernel: both node forms, refusals one line each, the nodes
file read only when it changed, the conflist's shape (dual-stack) as netkit-ipam parses it."""

from __future__ import annotations

import ipaddress
import json
import os

import pytest

from netkit.firewall import backend
from netkit.ipam import config as ipam_config
from netkit.node import conflist, filesource, model, snapshot
from harness.kubeapi import node_object


def test_both_forms_give_the_same_node() -> None:
    short = model.from_entry({"name": "n2", "internalIP": "192.168.77.12", "podCIDRs": ["10.244.2.0/24", "fd10::/64"]})
    full = model.from_entry(node_object("n2", "192.168.77.12", ["10.244.2.0/24", "fd10::/64"]))
    assert short == full
    old = node_object("n3", "192.168.77.13", [])
    old["spec"]["podCIDR"] = "10.244.3.0/24"  # before podCIDRs existed
    assert [str(c) for c in model.from_kubernetes(old).pod_cidrs] == ["10.244.3.0/24"]


@pytest.mark.parametrize(("entry", "line"), [
    ({"internalIP": "10.0.0.1"}, "a node without a name: None"),
    ({"name": "n1", "podCIDRs": ["10.244.1.0/23x"]}, "node n1: podCIDR 10.244.1.0/23x: "),
    ({"name": "n1", "podCIDRs": ["10.244.1.1/24"]}, "node n1: podCIDR 10.244.1.1/24: 10.244.1.1/24 has host bits set"),
    ({"name": "n1", "podCIDRs": ["10.1.0.0/24", "10.2.0.0/24"]}, "node n1: more than one podCIDR of one family"),
    ({"name": "n1", "internalIP": "300.0.0.1"}, "node n1: InternalIP 300.0.0.1: "),
    ("n1", "a node entry is not a mapping: 'n1'"),
])
def test_a_bad_node_is_refused_in_one_line(entry: object, line: str) -> None:
    with pytest.raises(model.NodeError) as exc:
        model.from_entry(entry)
    assert str(exc.value).startswith(line) and "\n" not in str(exc.value)


def test_nodes_file_is_read_when_it_changed_and_one_bad_entry_spares_the_rest(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(str(tmp_path), "nodes.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"items": [node_object("n1", "10.0.0.1", ["10.244.1.0/24"]), {"name": "n2", "podCIDR": "x"},
                             {"name": "n1", "internalIP": "10.0.0.9"}]}, f)
    nodes = filesource.NodesFile(path)
    assert nodes.changed()
    snap = nodes.read()
    assert list(snap.nodes) == ["n1"]
    assert snap.refused[0].startswith("node n2: podCIDR x: ")
    assert snap.refused[1] == "node n1: listed twice, the first entry counts"
    assert not nodes.changed()
    with open(path, "w", encoding="utf-8") as f:
        f.write("[1, 2")
    assert nodes.changed()
    with pytest.raises(filesource.FileError, match="not YAML/JSON"):
        nodes.read()
    os.unlink(path)
    with pytest.raises(filesource.FileError, match="No such file"):
        nodes.read()


def test_dual_stack_conflist_is_one_range_set_and_default_route_per_family(tmp_path: os.PathLike[str]) -> None:
    node = model.make("n1", ["10.0.0.1"], ["fd10:244:1::/64", "10.244.1.0/24"])
    conf_dir = os.path.join(str(tmp_path), "net.d")
    assert conflist.write(conf_dir, node.pod_cidrs)
    assert not conflist.write(conf_dir, node.pod_cidrs)  # unchanged: not written again
    assert os.listdir(conf_dir) == [conflist.FILE_NAME]  # no temporary file left beside it
    with open(os.path.join(conf_dir, conflist.FILE_NAME), encoding="utf-8") as f:
        conf = json.load(f)
    assert [p["type"] for p in conf["plugins"]] == ["netkit-bridge", "netkit-loopback"]
    bridge = conf["plugins"][0]
    assert (bridge["bridge"], bridge["isGateway"], bridge["ipMasq"], bridge["capabilities"]) == \
        ("cni0", True, False, {"portMappings": True})
    parsed = ipam_config.parse(bridge)
    assert [[str(r.subnet) for r in s] for s in parsed.range_sets] == [["10.244.1.0/24"], ["fd10:244:1::/64"]]
    assert [str(r.dst) for r in parsed.routes] == ["0.0.0.0/0", "::/0"]
    with pytest.raises(ValueError):
        conflist.build(())


def test_the_conflist_names_the_nodes_firewall_backend_for_the_bridge_plugin(tmp_path: os.PathLike[str]) -> None:
    conf_dir = os.path.join(str(tmp_path), "net.d")
    cidrs = (ipaddress.ip_network("10.244.1.0/24"),)
    assert conflist.write(conf_dir, cidrs)
    assert "firewallBackend" not in conflist.build(cidrs)["plugins"][0]  # type: ignore[index]
    assert conflist.write(conf_dir, cidrs, firewall="iptables")  # a changed backend rewrites the file
    with open(os.path.join(conf_dir, conflist.FILE_NAME), encoding="utf-8") as f:
        assert json.load(f)["plugins"][0][backend.CONFIG_KEY] == "iptables"


@pytest.mark.parametrize(("entry", "line"), [
    ({"metadata": "x"}, "a Node object whose metadata is not a mapping: 'x'"),
    ({"metadata": {"name": 5}}, "a node without a name: 5"),
    ({"metadata": {"name": "n1"}, "spec": 5}, "node n1: spec is not a mapping: 5"),
    ({"metadata": {"name": "n1"}, "spec": {"podCIDRs": "10.244.1.0/24"}}, "node n1: spec.podCIDRs is not a list"),
    ({"metadata": {"name": "n1"}, "spec": {"podCIDR": 7}}, "node n1: podCIDR 7 is not a string"),
    ({"metadata": {"name": "n1"}, "status": "up"}, "node n1: status is not a mapping: 'up'"),
    ({"metadata": {"name": "n1"}, "status": {"addresses": 7}}, "node n1: status.addresses is not a list: 7"),
    ({"metadata": {"name": "n1"}, "status": {"addresses": [7]}}, "node n1: status.addresses holds an entry"),
    ({"metadata": {"name": "n1"}, "status": {"addresses": [{"type": "InternalIP", "address": 7}]}},
     "node n1: InternalIP 7 is not a string"),
])
def test_a_malformed_node_object_is_refused_naming_it(entry: object, line: str) -> None:
    with pytest.raises(model.NodeError) as exc:
        model.from_entry(entry)
    assert str(exc.value).startswith(line) and "\n" not in str(exc.value)


def test_garbage_entries_are_refused_one_line_each_and_spare_the_rest() -> None:
    snap = snapshot.from_entries([{"metadata": "x"}, node_object("n1", "10.0.0.1", ["10.244.1.0/24"]),
                                  {"metadata": {"name": "n2"}, "spec": 5}, None, [1, 2]])
    assert list(snap.nodes) == ["n1"]
    assert len(snap.refused) == 4 and all("\n" not in line for line in snap.refused)


class _Hostile(dict):  # type: ignore[type-arg]
    """A mapping whose reading fails in a way no check foresaw."""

    def get(self, key: object, default: object = None) -> object:
        raise RuntimeError("unreadable")


def test_an_entry_failing_unforeseen_is_refused_not_raised() -> None:
    snap = snapshot.from_entries([_Hostile(name="n9"), {"name": "n1", "internalIP": "10.0.0.1"}])
    assert list(snap.nodes) == ["n1"]
    assert snap.refused[0].startswith("a node entry refused: RuntimeError: unreadable")


@pytest.mark.parametrize(("text", "error"), [
    ("", "empty"),
    ("# the nodes\n", "empty"),
    ("{}\n", "neither nodes: nor items:"),
    ("kind: NodeList\n", "neither nodes: nor items:"),
    ("nodes:\n", "nodes: is empty"),
    ("items:\n", "items: is empty"),
])
def test_an_empty_or_keyless_nodes_file_is_an_error_not_no_nodes(tmp_path: os.PathLike[str], text: str,
                                                                error: str) -> None:
    path = os.path.join(str(tmp_path), "nodes.yaml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    with pytest.raises(filesource.FileError, match=error):
        filesource.NodesFile(path).read()


@pytest.mark.parametrize("text", ["nodes: []\n", "items: []\n", "[]\n"])
def test_an_explicit_empty_list_is_no_nodes(tmp_path: os.PathLike[str], text: str) -> None:
    path = os.path.join(str(tmp_path), "nodes.yaml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    assert filesource.NodesFile(path).read() == snapshot.Snapshot()
