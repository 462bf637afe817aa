"""Every failpoint of ADD, DEL and GC, with ``error`` and ``kill``: afterwards DEL (or GC) leaves nothing
of the attachment and a new ADD for the same container works.

Faults are armed in the plugin's own environment (plugins run in-process here; the agent's
failpoints are in test_agent_faults.py).  Firewall steps run on both backends.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest

from netkit import failpoints
from netkit.net import names
from tests.faults.common import (GATEWAY, NET, PORTS, address, attach_and_prove, detach_clean, full_conf, gc_conf,
                                 leftovers)
from tests.sandbox import Namespace, Sandbox, bridge_conf

KILLED = -signal.SIGKILL
BRIDGE_ADD = ["bridge.add.after-bridge", "bridge.add.after-veth", "bridge.add.after-attach", "bridge.add.after-ipam",
              "bridge.add.after-gateway", "bridge.add.after-container"]
FIREWALL_ADD = ["bridge.add.after-network-rules", "bridge.add.after-masq", "bridge.add.after-dnat"]
IPAM_ADD = ["ipam.add.after-reserve", "ipam.add.after-allocate"]
# Kill points whose debris differs in kind (an unlabelled veth, a labelled one, a lease, rules):
# GC is tried on these; the others leave a subset of the same objects.  The bridge answers its
# netkit-ipam delegate in its own process (launch.invoker), so a kill there kills the bridge,
# leaving what bridge.add.after-attach leaves plus a lease: DEL is tried on it.
GC_WORTHY = {"bridge.add.after-veth", "bridge.add.after-attach", "bridge.add.after-ipam", "bridge.add.after-container",
             "bridge.add.after-dnat"}


def _cases() -> list[Any]:
    out = []
    for point in BRIDGE_ADD + IPAM_ADD + FIREWALL_ADD:
        backends = ["nftables", "iptables"] if point in FIREWALL_ADD else ["nftables"]
        for backend in backends:
            out.append(pytest.param(point, "error", backend, "DEL", id=f"{point}-error-{backend}"))
            out.append(pytest.param(point, "kill", backend, "DEL", id=f"{point}-kill-{backend}-DEL"))
            if point in GC_WORTHY:
                out.append(pytest.param(point, "kill", backend, "GC", id=f"{point}-kill-{backend}-GC"))
    return out


def _armed(box: Sandbox, command: str, c: Namespace | None, spec: str, **kw: Any) -> dict[str, str]:
    return dict(box.env(command, c, **kw), **{failpoints.ENV: spec})


def _assert_fired(point: str, action: str, rc: int, out: Any) -> None:
    """The fault really happened where it was armed (a fault that never fires proves nothing)."""
    if action == "error":
        assert rc == 1 and out["code"] == 100 and point in out["msg"], out
    else:
        assert (rc, out) == (KILLED, None)


def test_every_documented_failpoint_is_placed_in_the_code() -> None:
    import pathlib

    doc = failpoints.__doc__ or ""
    names = {line.split("``")[1] for line in doc.splitlines() if line.startswith("``") and "." in line.split("``")[1]}
    source = "".join(p.read_text() for p in pathlib.Path(failpoints.__file__).parent.rglob("*.py"))
    placed = {name for name in names if f'failpoints.hit("{name}")' in source}
    assert len(names) >= 20 and placed == names, names - placed


def test_malformed_spec_is_refused_rather_than_ignored() -> None:
    assert failpoints.parse("a.b=error, c.d=kill,e.f=sleep:20") == {
        "a.b": ("error", 0.0), "c.d": ("kill", 0.0), "e.f": ("sleep", 0.02)}
    for bad in ("a.b", "a.b=explode", "a.b=sleep", "=error", "a.b=error:3"):
        with pytest.raises(ValueError):
            failpoints.parse(bad)


@pytest.mark.parametrize(("point", "action", "backend", "cleanup"), _cases())
def test_add_fault_is_cleaned_by_del_or_gc_and_add_then_works(inproc: Sandbox, point: str, action: str,
                                                               backend: str, cleanup: str) -> None:
    box = inproc
    box.firewall = backend
    conf = full_conf(box)
    c = box.container()
    rc, out = box.exec_plugin("netkit-bridge", _armed(box, "ADD", c, f"{point}={action}"), conf)
    _assert_fired(point, action, rc, out)
    if action == "error":
        assert leftovers(box, [c]) == []  # rolled back: a failed ADD leaves nothing
    if cleanup == "DEL":
        detach_clean(box, conf, c)
    else:
        rc, out = box.call("netkit-bridge", "GC", gc_conf(conf, []))
        assert (rc, out) == (0, None)
        assert leftovers(box, [c]) == []
    attach_and_prove(box, conf, c)
    detach_clean(box, conf, c)


DEL_POINTS = [("bridge.del.after-ipam", "nftables"), ("bridge.del.after-firewall", "nftables"),
              ("bridge.del.after-firewall", "iptables"), ("bridge.del.after-container-veth", "nftables"),
              ("ipam.del.after-release", "nftables")]


@pytest.mark.parametrize("action", ["error", "kill"])
@pytest.mark.parametrize(("point", "backend"), DEL_POINTS, ids=[f"{p}-{b}" for p, b in DEL_POINTS])
def test_del_fault_is_finished_by_the_next_del(inproc: Sandbox, point: str, backend: str, action: str) -> None:
    box = inproc
    box.firewall = backend
    # Two addresses per attachment, so ipam.del.after-release fires with one lease still held.
    conf = full_conf(box)
    conf["ipam"]["ranges"] = [[{"subnet": "10.20.0.0/24"}], [{"subnet": "10.21.0.0/24"}]]
    c = box.container()
    attach_and_prove(box, conf, c)
    rc, out = box.exec_plugin("netkit-bridge", _armed(box, "DEL", c, f"{point}={action}"), conf)
    _assert_fired(point, action, rc, out)
    if point == "bridge.del.after-container-veth":
        assert leftovers(box, [c]) == []  # the container end took its host peer along: nothing to finish
    else:
        assert leftovers(box, [c]) != []  # the fault interrupted DEL for real
    detach_clean(box, conf, c)
    attach_and_prove(box, conf, c)
    detach_clean(box, conf, c)


@pytest.mark.parametrize("action", ["error", "kill"])
@pytest.mark.parametrize("point", ["bridge.gc.after-ipam", "bridge.gc.after-firewall"])
def test_gc_fault_is_finished_by_the_next_gc(fw_inproc: Sandbox, point: str, action: str) -> None:
    box = fw_inproc
    conf = full_conf(box)
    stale, kept = box.container(), box.container()
    attach_and_prove(box, conf, stale)
    kept_conf = full_conf(box, ports=[{"hostPort": 9090, "containerPort": 80}])
    kept_addr = address(attach_and_prove(box, kept_conf, kept))
    kept_hash = names.attachment_hash(NET, kept.name, "eth0")
    valid = [(kept.name, "eth0")]
    rc, out = box.exec_plugin("netkit-bridge", _armed(box, "GC", None, f"{point}={action}"), gc_conf(conf, valid))
    _assert_fired(point, action, rc, out)
    assert box.call("netkit-bridge", "GC", gc_conf(conf, valid)) == (0, None)
    left = leftovers(box, [stale])
    # Exactly the kept attachment remains: its lease, veth, masquerade and DNAT chains, its port.
    assert [x for x in left if kept_hash not in x and x != f"lease-dir {kept_addr}"] == []
    assert len(left) == 6, left
    assert kept.ping(GATEWAY)
    attach_and_prove(box, conf, stale)
    assert box.call("netkit-bridge", "DEL", conf, stale) == (0, None)
    detach_clean(box, kept_conf, kept)  # and with both gone, nothing of either is left
    assert leftovers(box, [stale]) == []


def _portmap_conf(prev: dict[str, Any] | None) -> dict[str, Any]:
    conf: dict[str, Any] = {"cniVersion": "1.0.0", "name": "testnet", "type": "netkit-portmap",
                            "capabilities": {"portMappings": True}, "runtimeConfig": {"portMappings": PORTS}}
    if prev is not None:
        conf["prevResult"] = prev
    return conf


@pytest.mark.parametrize("action", ["error", "kill"])
@pytest.mark.parametrize("point", ["portmap.add.after-publish", "portmap.del.after-unpublish"])
def test_portmap_fault_leaves_no_rule_after_del(fw_inproc: Sandbox, point: str, action: str) -> None:
    box = fw_inproc
    c = box.container()
    rc, prev = box.call("netkit-bridge", "ADD", bridge_conf(box), c)
    assert rc == 0, prev
    command = "ADD" if ".add." in point else "DEL"
    if command == "DEL":
        assert box.call("netkit-portmap", "ADD", _portmap_conf(prev), c) == (0, prev | {"cniVersion": "1.0.0"})
    rc, out = box.exec_plugin("netkit-portmap", _armed(box, command, c, f"{point}={action}"), _portmap_conf(prev))
    _assert_fired(point, action, rc, out)
    if command == "ADD" and action == "error":
        assert box.group_chains() == []  # rolled back
    assert box.call("netkit-portmap", "DEL", _portmap_conf(prev), c) == (0, None)
    assert box.group_chains() == []
    rc, out = box.call("netkit-portmap", "ADD", _portmap_conf(prev), c)
    assert rc == 0 and len(box.group_chains()) == 2, out
    assert box.call("netkit-portmap", "DEL", _portmap_conf(prev), c) == (0, None)
    detach_clean(box, bridge_conf(box), c)


def test_sleep_failpoint_delays_and_then_completes(inproc: Sandbox) -> None:
    import time

    c = inproc.container()
    conf = full_conf(inproc)
    start = time.monotonic()
    rc, out = inproc.exec_plugin("netkit-bridge", _armed(inproc, "ADD", c, "bridge.add.after-ipam=sleep:700"), conf)
    assert rc == 0 and time.monotonic() - start >= 0.7, out
    assert c.ping(GATEWAY)
    assert address(out) == "10.20.0.2"
    detach_clean(inproc, conf, c)


@pytest.mark.parametrize("action", ["error", "kill"])
@pytest.mark.parametrize("cleanup", ["DEL", "GC"])
def test_iptables_fault_between_filter_and_nat_commit_leaves_no_accept_rule(inproc: Sandbox, action: str,
                                                                          cleanup: str) -> None:
    # With FORWARD's policy DROP the iptables backend commits accepts to filter, then the rules to nat.
    box = inproc
    box.firewall = "iptables"
    assert box.host.run("iptables-legacy", "-P", "FORWARD", "DROP").returncode == 0
    conf = full_conf(box)
    c = box.container()
    rc, out = box.exec_plugin("netkit-bridge", _armed(box, "ADD", c, f"iptables.between-commits={action}"), conf)
    _assert_fired("iptables.between-commits", action, rc, out)
    if action == "error":
        assert leftovers(box, [c]) == []  # the filter commit is undone with the rest
    else:
        assert any(x.startswith("filter rule") for x in leftovers(box, [c]))  # accepts without their nat rules
    if cleanup == "DEL":
        assert box.call("netkit-bridge", "DEL", conf, c) == (0, None)
    else:
        assert box.call("netkit-bridge", "GC", gc_conf(conf, [])) == (0, None)
    assert leftovers(box, [c]) == []
    attach_and_prove(box, conf, c)
    assert any(x.startswith("filter rule") for x in leftovers(box, [c]))  # the accepts are really made here
    detach_clean(box, conf, c)
