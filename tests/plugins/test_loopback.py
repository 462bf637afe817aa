"""netkit-loopback on real namespaces."""

from __future__ import annotations

import json

from tests.sandbox import Sandbox

CONF = {"cniVersion": "1.0.0", "name": "lo", "type": "netkit-loopback"}


def _lo_up(box: Sandbox, ns: str) -> bool:
    link = json.loads(box.host.run("ip", "-n", ns, "-j", "link", "show", "lo").stdout)[0]
    return "UP" in link["flags"]


def test_add_brings_lo_up_and_reports_its_addresses(box: Sandbox) -> None:
    c = box.container()
    c.run("ip", "link", "set", "lo", "down", check=True)
    rc, out = box.call("netkit-loopback", "ADD", CONF, c)
    assert rc == 0, out
    assert _lo_up(box, c.name)
    assert out["interfaces"] == [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": c.path}]
    assert {"address": "127.0.0.1/8", "interface": 0} in out["ips"]
    assert c.ping("127.0.0.1")


def test_check_then_del_brings_lo_down_and_del_is_idempotent(box: Sandbox) -> None:
    c = box.container()
    rc, out = box.call("netkit-loopback", "ADD", CONF, c)
    assert box.call("netkit-loopback", "CHECK", dict(CONF, prevResult=out), c) == (0, None)
    assert box.call("netkit-loopback", "DEL", CONF, c) == (0, None)
    assert not _lo_up(box, c.name)
    rc, out = box.call("netkit-loopback", "CHECK", CONF, c)
    assert rc == 1 and out["code"] == 106
    assert box.call("netkit-loopback", "DEL", CONF, c) == (0, None)
    assert box.call("netkit-loopback", "DEL", CONF, container_id="gone", netns="/nonexistent") == (0, None)


def test_results_in_old_versions_carry_ip_version(box: Sandbox) -> None:
    c = box.container()
    rc, out = box.call("netkit-loopback", "ADD", dict(CONF, cniVersion="0.3.1"), c)
    assert rc == 0 and out["cniVersion"] == "0.3.1"
    assert all(ip["version"] in ("4", "6") for ip in out["ips"])


def test_chained_after_another_plugin_it_passes_the_result_on(box: Sandbox) -> None:
    # A conflist ending in netkit-loopback (netkit node's): the runtime reads the pod's eth0 address
    # from the chain's last result, as the reference loopback passes prevResult through.
    c = box.container()
    c.run("ip", "link", "set", "lo", "down", check=True)
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": c.path}],
            "ips": [{"address": "10.1.2.3/24", "gateway": "10.1.2.1", "interface": 0}]}
    rc, out = box.call("netkit-loopback", "ADD", dict(CONF, prevResult=prev), c)
    assert rc == 0, out
    assert _lo_up(box, c.name)
    assert out["interfaces"] == prev["interfaces"] and out["ips"] == prev["ips"]
