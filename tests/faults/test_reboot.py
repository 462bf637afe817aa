"""A simulated reboot: leases written under another boot id, every namespace of that boot gone.

The first boot runs in-process with ``NETKIT_BOOT_ID`` (netkit.ipam.store.current_boot_id's test
override) set to a fake id and fills the pool; the reboot deletes its host and container
namespaces, keeping only the lease directory (on disk, as /var/lib/cni survives a reboot).  The
next boot is the machine's real boot id, in-process or through the agent.
"""

from __future__ import annotations

import ipaddress
import json
import os
from concurrent.futures import ThreadPoolExecutor

from tests import sandbox as sb
from tests.faults.common import GATEWAY, NET, address, lease_dir_files, leftovers
from tests.sandbox import Sandbox, bridge_conf

POOL = [f"10.20.0.{i}" for i in range(2, 9)]  # rangeStart .2 .. rangeEnd .8


def _conf(box: Sandbox) -> dict:
    conf = bridge_conf(box, isDefaultGateway=True)
    conf["ipam"]["ranges"] = [[{"subnet": "10.20.0.0/24", "rangeStart": POOL[0], "rangeEnd": POOL[-1]}]]
    return conf


def _owner(box: Sandbox, addr: str) -> dict:
    with open(os.path.join(box.data_dir, NET, addr), "rb") as f:
        data = f.read()
    try:
        return json.loads(data)
    except ValueError:
        return {"containerID": data.decode().split("\r\n")[0], "bootID": ""}


def test_adds_after_a_reboot_reclaim_every_lease_of_the_previous_boot(box: Sandbox, plugin_bin: str) -> None:
    # The reference host-local's lease (no boot id) on the last address: never reclaimed, never handed out.
    os.makedirs(os.path.join(box.data_dir, NET))
    with open(os.path.join(box.data_dir, NET, POOL[-1]), "w") as f:
        f.write("reference-container\r\neth0")
    old_ids = []
    with sb.sandbox(plugin_bin, box.data_dir) as before:  # the previous boot, in-process
        conf = _conf(before)
        for _ in POOL[:-1]:
            c = before.container()
            env = dict(before.env("ADD", c), NETKIT_BOOT_ID="boot-before-the-reboot")
            rc, out = before.exec_plugin("netkit-bridge", env, conf)
            assert rc == 0, out
            old_ids.append(c.name)
        full = before.container()
        rc, out = before.exec_plugin("netkit-bridge", dict(before.env("ADD", full), NETKIT_BOOT_ID="boot-before-the-reboot"),
                                     conf)
        assert rc == 1 and out["code"] == 103, out  # the pool really is full
    # The reboot: every namespace of that boot is gone; the lease directory is all that survived.
    assert all(not os.path.exists(f"/run/netns/{name}") for name in old_ids)
    assert lease_dir_files(box) == sorted(POOL)

    conf = _conf(box)
    new = [box.container() for _ in POOL[:-1]]
    with ThreadPoolExecutor(len(new)) as pool:
        results = list(pool.map(lambda c: box.call("netkit-bridge", "ADD", conf, c), new))
    assert all(rc == 0 for rc, _ in results), [out for rc, out in results if rc]
    addrs = [address(out) for _, out in results]
    assert sorted(addrs, key=ipaddress.ip_address) == POOL[:-1]  # every old lease reclaimed, none twice
    assert lease_dir_files(box) == sorted(POOL)
    for c, addr in zip(new, addrs):
        assert _owner(box, addr)["containerID"] == c.name
    assert _owner(box, POOL[-1])["containerID"] == "reference-container"
    assert new[0].ping(GATEWAY) and new[-1].ping(addrs[0])

    # The runtime's DELs for the containers of the old boot (namespaces gone) must not touch the new owners.
    for cid in old_ids:
        assert box.call("netkit-bridge", "DEL", conf, container_id=cid, netns="") == (0, None)
    assert lease_dir_files(box) == sorted(POOL)
    for c in new:
        assert box.call("netkit-bridge", "DEL", conf, c) == (0, None)
    assert lease_dir_files(box) == [POOL[-1]]
    os.unlink(os.path.join(box.data_dir, NET, POOL[-1]))
    assert leftovers(box, new) == []
