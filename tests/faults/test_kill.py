"""SIGKILL of the plugin process at random moments: the next DEL (or GC) leaves nothing, and ADD still works.

The plugin runs in-process (no agent), exec'd as a runtime execs it; it is killed 0-300 ms after
the exec, wherever it happens to be (interpreter start, netlink, IPAM delegate, firewall batch).
24 trials by default, 240 with NETKIT_FULL=1; half on each firewall backend.
"""

from __future__ import annotations

import os
import random
import subprocess
import time

from tests.faults.common import attach_and_prove, detach_clean, full_conf, gc_conf, leftovers, run_killed
from tests.faults.conftest import FULL
from tests.sandbox import Sandbox

TRIALS = 240 if FULL else 24


def test_plugin_sigkilled_at_random_moments_leaves_nothing_after_del_or_gc(inproc: Sandbox) -> None:
    box = inproc
    rng = random.Random(int(time.time()))
    seed_note = f"seed {rng.random()}"  # printed on failure through the assertion messages
    tally = {"killed": 0, "finished": 0, "del": 0, "gc": 0, "killed-del": 0}
    for trial in range(TRIALS):
        box.firewall = "nftables" if trial % 2 == 0 else "iptables"
        conf = full_conf(box)
        c = box.container()
        what = f"trial {trial} ({box.firewall}, {seed_note})"
        if trial % 6 == 5:
            # Kill a DEL instead: the attachment is complete, DEL dies part-way, the next DEL finishes.
            attach_and_prove(box, conf, c)
            rc = run_killed(box, box.env("DEL", c), conf, rng.uniform(0, 0.3))
            tally["killed-del"] += 1
        else:
            rc = run_killed(box, box.env("ADD", c), conf, rng.uniform(0, 0.3))
        tally["killed" if rc == -9 else "finished"] += 1
        if trial % 4 == 3:
            # A runtime that lost track of the container: GC with no valid attachment.
            assert box.call("netkit-bridge", "GC", gc_conf(conf, [])) == (0, None), what
            tally["gc"] += 1
        else:
            assert box.call("netkit-bridge", "DEL", conf, c) == (0, None), what
            tally["del"] += 1
        assert leftovers(box, [c]) == [], what
        box.containers.remove(c)
        subprocess.run(["ip", "netns", "del", c.name], check=True)
    print(f"plugin kills: {TRIALS} trials, {tally}")
    assert tally["killed"] >= TRIALS // 3  # most trials really died mid-way
    for backend in ("nftables", "iptables"):
        box.firewall = backend
        c = box.container()
        attach_and_prove(box, full_conf(box), c)
        detach_clean(box, full_conf(box), c)


def test_lease_of_an_ipam_delegate_outliving_its_killed_bridge_is_not_leaked(inproc: Sandbox) -> None:
    # The bridge is killed while its IPAM child is still starting; the runtime's DEL runs at once
    # and finds no lease yet; the orphaned child must not reserve one afterwards (nobody would
    # ever release it).  The sleep failpoint holds the child before the lease store's lock.
    box = inproc
    conf = full_conf(box)
    c = box.container()
    env = dict(box.env("ADD", c), NETKIT_FAILPOINTS="ipam.add.before-lock=sleep:1500")
    assert run_killed(box, env, conf, 0.8) == -9
    assert box.call("netkit-bridge", "DEL", conf, c) == (0, None)
    time.sleep(1.5)  # the orphan wakes up and carries on
    deadline = time.monotonic() + 10
    while subprocess.run(["pgrep", "-f", f"{box.bin_dir}/netkit-ipam"], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "the orphaned IPAM child never finished"
        time.sleep(0.1)
    assert leftovers(box, [c]) == []
    attach_and_prove(box, conf, c)
    detach_clean(box, conf, c)


def test_temp_files_of_a_lease_writer_killed_mid_write_are_swept(inproc: Sandbox) -> None:
    # What fileio.write_atomic leaves when SIGKILL lands between its open and its rename.
    box = inproc
    conf = full_conf(box)
    lease_dir = os.path.join(box.data_dir, "testnet")
    os.makedirs(lease_dir)
    torn = ["10.20.0.9.tmp.4242", "last_reserved_ip.0.tmp.4243", ".netkit-boot-id.tmp.4244"]
    for name in torn:
        with open(os.path.join(lease_dir, name), "w") as f:
            f.write("{")
    c = box.container()
    attach_and_prove(box, conf, c)
    assert not set(torn) & set(os.listdir(lease_dir))
    detach_clean(box, conf, c)
