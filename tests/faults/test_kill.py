"""SIGKILL of the plugin process at random moments: the next DEL (or GC) leaves nothing, and ADD still works.

The plugin runs in-process (no agent), exec'd as a runtime execs it, and is killed at a moment drawn
from the whole length of an unkilled run of the same command measured at the start (interpreter
start, netlink, IPAM delegate, firewall batch).  So that every kill lands mid-run however fast or
loaded the machine is, a sleep failpoint after the last step holds the plugin before it answers: a
run faster than the measured one is killed there, with its attachment complete and no answer given.
24 trials by default, 240 with NETKIT_FULL=1; half on each firewall backend.  The moments come from
a seed that is printed (tests/seeds.py; NETKIT_SEED repeats them).
"""

from __future__ import annotations

import os
import subprocess
import time

from netkit.launch import native

from tests import seeds
from tests.faults.common import attach_and_prove, detach_clean, full_conf, gc_conf, leftovers, run_killed
from tests.faults.conftest import FULL
from tests.sandbox import Namespace, Sandbox
from tests.waiting import until

TRIALS = 240 if FULL else 24
BACKENDS = ("nftables", "iptables")
# After the last step of each command: the plugin waits here, so a kill drawn within the measured run
# always finds it still running.  A hang guard, never waited out (every kill comes first).
PAD = {"ADD": "bridge.add.after-dnat=sleep:120000", "DEL": "bridge.del.after-container-veth=sleep:120000"}
HANG_GUARD = 300  # seconds a killed plugin may take to be reaped: only a hung test gets there


def _run_length(box: Sandbox, c: Namespace) -> dict[str, float]:
    """Seconds an unkilled ADD and DEL of ``c`` take now, exec'd as in the trials (not asserted: the
    kill moments are drawn from them)."""
    conf = full_conf(box)
    lengths = {}
    for command in ("ADD", "DEL"):
        start = time.monotonic()
        rc, out = box.exec_plugin("netkit-bridge", box.env(command, c), conf)
        lengths[command] = time.monotonic() - start
        assert rc == 0, (command, out)
    return lengths


def test_plugin_sigkilled_at_random_moments_leaves_nothing_after_del_or_gc(inproc: Sandbox) -> None:
    box = inproc
    trial_seed = seeds.trial("plugin kills")
    rng = trial_seed.rng
    lengths = {}
    for backend in BACKENDS:
        box.firewall = backend
        c = box.container()
        lengths[backend] = _run_length(box, c)
        assert leftovers(box, [c]) == []
    print(f"unkilled runs (s): {lengths}")
    tally = {"killed ADD": 0, "killed DEL": 0, "del": 0, "gc": 0}
    for trial in range(TRIALS):
        box.firewall = BACKENDS[trial % 2]
        conf = full_conf(box)
        c = box.container()
        command = "DEL" if trial % 6 == 5 else "ADD"
        if command == "DEL":
            # Kill a DEL instead: the attachment is complete, DEL dies part-way, the next DEL finishes.
            attach_and_prove(box, conf, c)
        delay = rng.uniform(0, lengths[box.firewall][command])
        what = f"trial {trial} ({box.firewall}, {command} killed at {delay * 1000:.0f} ms, {trial_seed})"
        env = dict(box.env(command, c), NETKIT_FAILPOINTS=PAD[command])
        rc = run_killed(box, env, conf, delay, timeout=HANG_GUARD)
        assert rc == -9, f"{what}: the plugin exited {rc} on its own before the kill"
        tally[f"killed {command}"] += 1
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
    for backend in BACKENDS:
        box.firewall = backend
        c = box.container()
        attach_and_prove(box, full_conf(box), c)
        detach_clean(box, full_conf(box), c)


def _ipam_children(exe: str) -> bool:
    """Whether IPAM executable ``exe`` is running."""
    return subprocess.run(["pgrep", "-f", exe], capture_output=True).returncode == 0


def test_lease_of_an_ipam_delegate_outliving_its_killed_bridge_is_not_leaked(inproc: Sandbox) -> None:
    # The bridge is killed once its IPAM child runs; the runtime's DEL runs at once and finds no
    # lease yet; the orphaned child must not reserve one afterwards (nobody would ever release it).
    # The sleep failpoint holds the child before the lease store's lock.  The delegate is a copy of
    # netkit-ipam's launcher, not this installation's byte for byte, so it is exec'd as any foreign
    # IPAM plugin is (this installation's own would answer inside the bridge's process: no child).
    box = inproc
    conf = full_conf(box)
    c = box.container()
    foreign = os.path.join(os.path.dirname(box.data_dir), "foreign-bin")
    os.makedirs(foreign)
    ipam = os.path.join(foreign, "netkit-ipam")
    own = os.path.join(box.bin_dir, "netkit-ipam")
    if native.read_binary(own) is not None:
        own = native.fallback_path(own)  # the default install's C launcher: copy the Python launcher it execs
    with open(own, encoding="utf-8") as src, open(ipam, "w") as dst:
        dst.write(src.read() + "# a copy: exec'd like any plugin\n")
    os.chmod(ipam, 0o755)
    env = dict(box.env("ADD", c), CNI_PATH=f"{foreign}:{box.cni_path}",
               NETKIT_FAILPOINTS="ipam.add.before-lock=sleep:1500")
    rc = run_killed(box, env, conf, lambda: _ipam_children(ipam), timeout=HANG_GUARD)
    assert rc == -9  # the bridge waits for its child, which sleeps: it cannot have finished
    assert box.call("netkit-bridge", "DEL", conf, c) == (0, None)
    until(lambda: not _ipam_children(ipam), "the orphaned IPAM child never finished", patience=HANG_GUARD)
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
