"""Every pairing of {netkit, reference} bridge x IPAM x portmap: ADD, CHECK, traffic, DEL.

The reference portmap (1.1.1) fails every CHECK: it looks for its IPv4 rules in the IPv6 table
(on an IPv4-only attachment, for IPv6 chains that were never made). That failure is asserted as the
control; netkit-portmap's CHECK passes in every pairing.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.sandbox import Sandbox

HOST, MACHINE = "10.30.0.1", "10.30.0.2"
IMPLS = {"bridge": ("netkit-bridge", "bridge"), "ipam": ("netkit-ipam", "host-local"),
         "portmap": ("netkit-portmap", "portmap")}
COMBOS = list(itertools.product(*IMPLS.values()))


def _conflist(box: Sandbox, bridge: str, ipam: str, portmap: str) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "matrix", "plugins": [
        {"type": bridge, "bridge": "nkbr0", "isGateway": True, "ipMasq": True, "hairpinMode": True,
         "ipam": {"type": ipam, "ranges": [[{"subnet": "10.20.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}],
                  "dataDir": box.data_dir}},
        {"type": portmap, "capabilities": {"portMappings": True}, "snat": True}]}


def _run(box: Sandbox, command: str, conflist: dict[str, Any], container: Any, prev: dict | None,
         mappings: list[dict[str, Any]]) -> dict | None:
    """One libcni-style pass over the list (ADD/CHECK in order, DEL in reverse)."""
    plugins = conflist["plugins"] if command != "DEL" else list(reversed(conflist["plugins"]))
    for plugin in plugins:
        conf = dict(plugin, name=conflist["name"], cniVersion=conflist["cniVersion"])
        if plugin.get("capabilities", {}).get("portMappings"):
            conf["runtimeConfig"] = {"portMappings": mappings}
        if prev is not None:
            conf["prevResult"] = prev
        rc, out = box.call(plugin["type"], command, conf, container)
        if command == "CHECK" and plugin["type"] == "portmap":
            assert rc == 1 and "ipv6" in out["msg"], out  # the reference bug, see above
            continue
        assert rc == 0, (plugin["type"], command, out)
        if command == "ADD":
            prev = out
    return prev


@pytest.mark.parametrize("bridge, ipam, portmap", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_pairing_adds_checks_forwards_and_deletes(box: Sandbox, reference_plugins: str, bridge: str, ipam: str,
                                                  portmap: str) -> None:
    x = box.machine([HOST], MACHINE)
    c = box.container()
    conflist = _conflist(box, bridge, ipam, portmap)
    mappings = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
    result = _run(box, "ADD", conflist, c, None, mappings)
    assert result is not None and result["ips"][0]["address"].startswith("10.20.0.")
    _run(box, "CHECK", conflist, c, result, mappings)
    server = c.serve("C", 80)
    try:
        before = x.ask("tcp", HOST, 8080)
        assert before == f"C {MACHINE}"
        _run(box, "DEL", conflist, c, result, mappings)
        # Control: the same port answered before the DEL (the server still runs: only the mapping went).
        assert x.unanswered("tcp", HOST, 8080, control=before)
    finally:
        server.kill()
        server.wait()
    assert box.leases("matrix") == [] and c.links() == ["lo"]
    assert box.group_chains() == []
