"""Concurrency: 64 parallel ADDs and DELs on one network, a race for one host port, and two independent
plugin chains (two "runtimes") sharing one IPAM store.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from netkit.net import names
from tests.faults.common import GATEWAY, NET, address, full_conf, host_veths, lease_dir_files, leftovers
from tests.faults.conftest import FULL
from tests.sandbox import Namespace, Sandbox, bridge_conf


def _parallel(box: Sandbox, command: str, conf: dict[str, Any], containers: list[Namespace]) -> list[tuple[int, Any]]:
    with ThreadPoolExecutor(len(containers)) as pool:
        return list(pool.map(lambda c: box.call("netkit-bridge", command, conf, c), containers))


def _owner(box: Sandbox, addr: str) -> str:
    with open(os.path.join(box.data_dir, NET, addr), encoding="utf-8") as f:
        return json.load(f)["containerID"]


def test_64_parallel_adds_then_dels_get_distinct_addresses_and_lose_no_lease(box: Sandbox) -> None:
    # 64 interpreters at once on a small CI machine take ~35 s: in-process runs 32 unless NETKIT_FULL.
    n = 64 if FULL or box.agent_socket else 32
    conf = bridge_conf(box)
    containers = [box.container() for _ in range(n)]
    results = _parallel(box, "ADD", conf, containers)
    failed = [out for rc, out in results if rc != 0]
    assert failed == []  # no lock error, no "try again": every ADD got its address
    addrs = [address(out) for _, out in results]
    assert len(set(addrs)) == n
    assert lease_dir_files(box) == sorted(addrs)  # one lease per ADD, none lost, none extra
    assert all(_owner(box, a) == c.name for a, c in zip(addrs, containers))
    assert len(host_veths(box)) == n
    assert containers[0].ping(addrs[-1]) and containers[-1].ping(GATEWAY)
    results = _parallel(box, "DEL", conf, containers)
    assert [out for rc, out in results if rc != 0] == []
    assert leftovers(box, containers) == []


def test_concurrent_adds_for_one_host_port_one_wins_the_rest_get_107_and_leave_nothing(fw_box: Sandbox) -> None:
    box = fw_box
    conf = full_conf(box, ports=[{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}])
    containers = [box.container() for _ in range(8)]
    results = _parallel(box, "ADD", conf, containers)
    winners = [i for i, (rc, _) in enumerate(results) if rc == 0]
    assert len(winners) == 1, results
    losers = [out for rc, out in results if rc != 0]
    assert all(out["code"] == 107 and "already allocated" in out["msg"] for out in losers), losers
    win = containers[winners[0]]
    win_hash = names.attachment_hash(NET, win.name, "eth0")
    # Only the winner's objects: its lease, interface, veth, masquerade chain, DNAT chain, its SNAT
    # chain and its port's index entry.
    left = leftovers(box, containers)
    assert sorted(x for x in left if win_hash not in x) == sorted([f"lease-dir {address(results[winners[0]][1])}",
                                                                   f"{win.name}: eth0"])
    assert len(left) == 7, left
    assert win.ping(GATEWAY)
    assert box.call("netkit-bridge", "DEL", conf, win) == (0, None)
    assert leftovers(box, containers) == []


def _cni(box: Sandbox, conf_dir: str, cache_dir: str, command: str, c: Namespace) -> subprocess.CompletedProcess[str]:
    env = dict(box.env(command, c), PATH=os.environ.get("PATH", ""))
    return subprocess.run(["ip", "netns", "exec", box.host.name, sys.executable, "-m", "netkit", "cni", command.lower(),
                           NET, c.path, "--conf-dir", conf_dir, "--path", box.cni_path, "--cache-dir", cache_dir],
                          capture_output=True, text=True, env=env, timeout=120)


def test_two_plugin_chains_sharing_one_ipam_store_never_hand_out_an_address_twice(box: Sandbox, tmp_path: Any) -> None:
    # Two "runtimes": `netkit cni` conflist runners with their own conf and cache dirs, same dataDir.
    conflist = {"cniVersion": "1.1.0", "name": NET, "plugins": [bridge_conf(box)]}
    conflist["plugins"][0].pop("cniVersion")
    dirs = []
    for name in ("a", "b"):
        conf_dir, cache_dir = os.path.join(tmp_path, name, "conf"), os.path.join(tmp_path, name, "cache")
        os.makedirs(conf_dir)
        with open(os.path.join(conf_dir, "net.conflist"), "w") as f:
            json.dump(conflist, f)
        dirs.append((conf_dir, cache_dir))
    jobs = [(dirs[i % 2], box.container()) for i in range(12)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        procs = list(pool.map(lambda j: _cni(box, j[0][0], j[0][1], "ADD", j[1]), jobs))
    assert all(p.returncode == 0 for p in procs), [p.stderr for p in procs if p.returncode]
    addrs = [str(ipaddress.ip_interface(json.loads(p.stdout)["ips"][0]["address"]).ip) for p in procs]
    assert len(set(addrs)) == len(jobs) and lease_dir_files(box) == sorted(addrs)
    with ThreadPoolExecutor(len(jobs)) as pool:
        procs = list(pool.map(lambda j: _cni(box, j[0][0], j[0][1], "DEL", j[1]), jobs))
    assert all(p.returncode == 0 for p in procs), [p.stderr for p in procs if p.returncode]
    assert leftovers(box, [c for _, c in jobs]) == []
