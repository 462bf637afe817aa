"""The port index (netkit/firewall/ports.py): conflicts found by lookup, stale entries verified away,
rules older than the index still respected; through the real plugins on both backends."""

from __future__ import annotations

import os

from netkit.firewall import ports
from tests.sandbox import Sandbox, bridge_conf

PORT = {"hostPort": 8080, "containerPort": 80}


def _conf(box: Sandbox, mappings: list[dict]) -> dict:
    return bridge_conf(box, capabilities={"portMappings": True}, runtimeConfig={"portMappings": mappings})


def _index(box: Sandbox) -> ports.PortIndex:
    return ports.PortIndex(key=ports.namespace_key(box.host.path))


def test_an_entry_whose_rules_never_landed_does_not_hold_the_port(fw_box: Sandbox) -> None:
    a = fw_box.container()
    index = _index(fw_box)
    index.rebuild({})
    index.add("NK-D-000000-deadbeefdeadbeef", [ports.parse_label("tcp/*/8080")])  # a writer killed before its commit
    rc, out = fw_box.call("netkit-bridge", "ADD", _conf(fw_box, [PORT]), a)
    assert rc == 0, out
    assert index.entries() == ["tcp-8080/*"]
    assert index.owners() == [c for c in fw_box.group_chains() if c.startswith("NK-D-") and not c.endswith("-S")]


def test_ports_published_before_the_index_existed_are_still_refused(fw_box: Sandbox) -> None:
    a, b = fw_box.container(), fw_box.container()
    assert fw_box.call("netkit-bridge", "ADD", _conf(fw_box, [PORT]), a)[0] == 0
    ports.forget_namespace(ports.namespace_key(fw_box.host.path))  # rules made by a netkit without the index
    rc, out = fw_box.call("netkit-bridge", "ADD", _conf(fw_box, [dict(PORT, hostIP="10.30.0.1")]), b)
    assert rc == 1 and out["code"] == 107, out
    assert _index(fw_box).complete and _index(fw_box).entries() == ["tcp-8080/*"]


def test_del_and_gc_forget_what_they_remove(fw_box: Sandbox) -> None:
    a, b = fw_box.container(), fw_box.container()
    conf_a, conf_b = _conf(fw_box, [PORT]), _conf(fw_box, [dict(PORT, hostPort=8081)])
    assert fw_box.call("netkit-bridge", "ADD", conf_a, a)[0] == 0
    assert fw_box.call("netkit-bridge", "ADD", conf_b, b)[0] == 0
    assert _index(fw_box).entries() == ["tcp-8080/*", "tcp-8081/*"]
    assert fw_box.call("netkit-bridge", "DEL", conf_a, a) == (0, None)
    assert _index(fw_box).entries() == ["tcp-8081/*"]
    gc = dict(bridge_conf(fw_box), cniVersion="1.1.0", **{"cni.dev/valid-attachments": []})
    assert fw_box.call("netkit-bridge", "GC", gc) == (0, None)
    assert _index(fw_box).entries() == [] and _index(fw_box).owners() == []
    # The freed port is free again.
    assert fw_box.call("netkit-bridge", "ADD", _conf(fw_box, [PORT]), b)[0] == 0


def test_indexes_of_deleted_namespaces_are_swept(fw_box: Sandbox) -> None:
    dead = os.path.join(ports.ROOT, "1")  # no namespace has inode 1
    os.makedirs(os.path.join(dead, "tcp-80"), exist_ok=True)
    ports.forget_namespace(ports.namespace_key(fw_box.host.path))
    assert fw_box.call("netkit-bridge", "ADD", _conf(fw_box, [PORT]), fw_box.container())[0] == 0
    assert not os.path.exists(dead)
    assert _index(fw_box).complete


def test_temp_files_of_a_killed_writer_are_swept_by_the_next_change(fw_box: Sandbox) -> None:
    a = fw_box.container()
    conf = _conf(fw_box, [PORT])
    assert fw_box.call("netkit-bridge", "ADD", conf, a)[0] == 0
    index = _index(fw_box)
    with open(os.path.join(index.dir, "tmp", "*.tmp.999999.999999"), "wb") as f:
        f.write(b"NK-D-")  # what SIGKILL mid-write leaves
    assert index.strays() == ["*.tmp.999999.999999"]
    assert fw_box.call("netkit-bridge", "DEL", conf, a) == (0, None)
    assert index.strays() == [] and index.entries() == []


def test_unspecified_addresses_are_one_family_each() -> None:
    from netkit.firewall.model import PortMapping, parse_port_mappings

    any4, any6, both = (PortMapping(80, 80, "tcp", ip) for ip in ("0.0.0.0", "::", ""))
    assert not any4.overlaps(any6) and both.overlaps(any4) and both.overlaps(any6)
    assert any4.overlaps(PortMapping(80, 80, "tcp", "10.0.0.1")) and not any4.overlaps(PortMapping(80, 80, "tcp", "::1"))
    assert any6.overlaps(PortMapping(80, 80, "tcp", "::1")) and any6.loopback6 and not any4.loopback6
    assert (any4.versions, any6.versions, both.versions) == ((4,), (6,), (4, 6))
    assert [m.host_ip for m in parse_port_mappings([{"hostPort": 1, "containerPort": 1, "hostIP": "0.0.0.0"}])] == ["0.0.0.0"]


def test_port_mapping_keys_match_regardless_of_case_as_go_cni_sends_them() -> None:
    # containerd 1.6's go-cni marshals its PortMapping struct without JSON tags (seen by tests/e2e/test_cri.py);
    # the reference portmap reads it through Go's case-insensitive encoding/json.
    from netkit.firewall.model import PortMapping, parse_port_mappings

    sent = [{"HostPort": 18080, "ContainerPort": 8080, "Protocol": "tcp", "HostIP": ""},
            {"HostPort": 53, "ContainerPort": 53, "Protocol": "UDP", "HostIP": "10.0.0.1"}]
    assert parse_port_mappings(sent) == [PortMapping(18080, 8080, "tcp", ""), PortMapping(53, 53, "udp", "10.0.0.1")]
