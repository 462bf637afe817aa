"""Faults in the warm agent: killed or failing mid-request, the launcher falls back or reports an error,
and after a restart DEL leaves nothing.  Failpoints come from the agent's own environment only.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from typing import Callable

import pytest

from netkit import failpoints
from tests import seeds
from tests.faults.common import (GATEWAY, address, attach_and_prove, detach_clean, full_conf, lease_dir_files,
                                 leftovers)
from tests.faults.conftest import FULL, Agent
from tests.sandbox import Sandbox

KILL_POINTS = ["agent.after-setns", "bridge.add.after-veth", "bridge.add.after-ipam", "ipam.add.after-reserve",
               "bridge.add.after-container", "bridge.add.after-dnat", "agent.before-reply"]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_agent_killed_mid_add_the_launcher_falls_back_and_del_after_restart_cleans(
        inproc: Sandbox, agents: Callable[..., Agent], point: str) -> None:
    box = inproc
    armed = agents(**{failpoints.ENV: f"{point}=kill"})
    box.agent_socket = armed.path
    conf = full_conf(box)
    c = box.container()
    result = attach_and_prove(box, conf, c)  # served in-process once the agent died under it
    armed.proc.wait(timeout=60)  # type: ignore[union-attr]  # a hang guard: the failpoint killed it already
    assert not armed.alive()  # the fault really hit the agent
    # One lease, the one reported: what the agent had reserved was taken over, not doubled.
    assert lease_dir_files(box) == [address(result)]
    assert len(box.group_chains()) == 3  # masquerade, DNAT and its SNAT: once each
    restarted = agents(path=armed.path)
    detach_clean(box, conf, c)
    attach_and_prove(box, conf, c)
    detach_clean(box, conf, c)
    assert restarted.alive()


@pytest.mark.parametrize("point", ["agent.after-setns", "bridge.add.after-container", "ipam.add.after-reserve"])
def test_agent_error_mid_add_is_rolled_back_in_the_agent(inproc: Sandbox, agents: Callable[..., Agent],
                                                         point: str) -> None:
    box = inproc
    armed = agents(**{failpoints.ENV: f"{point}=error"})
    box.agent_socket = armed.path
    conf = full_conf(box)
    c = box.container()
    rc, out = box.call("netkit-bridge", "ADD", conf, c)
    assert rc == 1 and out["code"] == 100 and point in out["msg"], out
    assert armed.alive() and leftovers(box, [c]) == []
    box.agent_socket = agents().path  # the same host with a healthy agent
    attach_and_prove(box, conf, c)
    detach_clean(box, conf, c)


def test_replies_failing_after_the_work_leave_nothing_once_del_ran(inproc: Sandbox,
                                                                    agents: Callable[..., Agent]) -> None:
    # Every reply fails after its work is done: first the IPAM delegate's (its lease is written),
    # so the bridge rolls back; then the bridge's own.  DEL through a healthy agent finishes the job.
    box = inproc
    box.agent_socket = agents(**{failpoints.ENV: "agent.before-reply=error"}).path
    conf = full_conf(box)
    c = box.container()
    rc, out = box.call("netkit-bridge", "ADD", conf, c)
    assert rc == 1 and "agent.before-reply" in out["msg"], out
    box.agent_socket = agents().path
    detach_clean(box, conf, c)
    attach_and_prove(box, conf, c)
    detach_clean(box, conf, c)


def test_a_client_cannot_arm_failpoints_in_the_agent(inproc: Sandbox, agents: Callable[..., Agent]) -> None:
    box = inproc
    healthy = agents()
    box.agent_socket = healthy.path
    conf = full_conf(box)
    c = box.container()
    env = dict(box.env("ADD", c), **{failpoints.ENV: "bridge.add.after-veth=kill,ipam.add.after-reserve=kill"})
    rc, out = box.exec_plugin("netkit-bridge", env, conf)
    # In-process, this env kills the plugin (see test_failpoints); served by the agent, it does nothing.
    assert rc == 0 and healthy.alive(), out
    assert c.ping(GATEWAY)
    detach_clean(box, conf, c)


def test_agent_sigkilled_at_random_moments_leaves_nothing_after_restart_and_del(
        inproc: Sandbox, agents: Callable[..., Agent]) -> None:
    box = inproc
    conf = full_conf(box)
    trial_seed = seeds.trial("agent kills")
    rng = trial_seed.rng
    trials = 40 if FULL else 6
    agent = agents()
    box.agent_socket = agent.path
    outcomes: dict[str, int] = {}
    for trial in range(trials):
        c = box.container()
        proc = subprocess.Popen(["ip", "netns", "exec", box.host.name, f"{box.bin_dir}/netkit-bridge"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                env=box.env("ADD", c))
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(conf).encode())
        proc.stdin.close()
        time.sleep(rng.uniform(0, 0.3))
        agent.kill()
        assert proc.stdout is not None
        out = proc.stdout.read()
        rc = proc.wait(timeout=60)
        # The launcher either got the agent's answer or fell back in-process: an answer either way.
        assert rc in (0, 1) and out.strip(), (trial, str(trial_seed), rc, out)
        outcomes["ok" if rc == 0 else "error"] = outcomes.get("ok" if rc == 0 else "error", 0) + 1
        if rc == 0:
            assert c.ping(GATEWAY), (trial, str(trial_seed))
        agent = agents(path=agent.path)  # the restart
        detach_clean(box, conf, c)
        box.containers.remove(c)
        subprocess.run(["ip", "netns", "del", c.name], check=True)
    print(f"agent kills: {trials} trials, outcomes {outcomes}")
    c = box.container()
    attach_and_prove(box, conf, c)
    detach_clean(box, conf, c)


def test_agent_keeps_no_lock_for_attachments_it_no_longer_serves() -> None:
    import threading

    from netkit.agent.server import _Locks

    locks = _Locks()
    for i in range(1000):  # a thousand containers come and go
        with locks.held(f"netkit-bridge\0c{i}\0eth0"):
            pass
    assert len(locks) == 0
    # Still one at a time per attachment: the second holder enters only after the first left.
    order: list[str] = []
    entered = threading.Event()

    def first() -> None:
        with locks.held("k"):
            entered.set()
            time.sleep(0.2)
            order.append("first leaves")

    t = threading.Thread(target=first)
    t.start()
    entered.wait(5)
    with locks.held("k"):
        order.append("second enters")
    t.join()
    assert order == ["first leaves", "second enters"] and len(locks) == 0


def _cpu_ticks(stat_path: str) -> int:
    """utime + stime (clock ticks) from a /proc/.../stat file."""
    with open(stat_path, encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)": field 3 onwards
    return int(fields[11]) + int(fields[12])


def _cpu_of_ended_threads(pid: int) -> tuple[int, int]:
    """(CPU ticks of the whole process, of those ticks the share of threads that have ended).

    A process's CPU time keeps what its ended threads used; its live threads show their own.
    """
    total = _cpu_ticks(f"/proc/{pid}/stat")
    live = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError):
            live += _cpu_ticks(f"/proc/{pid}/task/{tid}/stat")
    return total, total - live


def test_agent_serves_on_threads_it_keeps_and_keeps_no_callers_namespace(
        inproc: Sandbox, agents: Callable[..., Agent]) -> None:
    # Requests that touch nftables and netlink, straight through the client (no exec: fast).
    # The agent once made a thread per request, and libnftables' per-thread state outlived each
    # one (~1.5 MiB per 1,500 requests).  Its memory is a figure of bench/scale.py part (d): a
    # loaded machine may start more pool workers, so no memory bound here.  What is checked cannot
    # vary with load: the CPU time the requests took was spent by threads still alive afterwards
    # (a thread per request leaves nearly all of it to threads that have ended).
    from netkit.agent import client, protocol
    from netkit.net import netns

    box = inproc
    agent = agents()
    conf = json.dumps({"cniVersion": "1.1.0", "name": "testnet", "type": "netkit-portmap"}).encode()
    env = {"CNI_COMMAND": "STATUS", "CNI_PATH": box.cni_path, protocol.ENV_SOCKET: agent.path}

    def serve(n: int) -> None:
        with netns.entered(box.host.path):  # the client hands the agent its thread's namespace
            for _ in range(n):
                assert client.forward("netkit-portmap", env, conf) == (b"", 0)

    serve(50)  # the pool's first workers
    total_before, ended_before = _cpu_of_ended_threads(agent.pid)
    serve(1500)
    total_after, ended_after = _cpu_of_ended_threads(agent.pid)
    spent, by_ended = total_after - total_before, ended_after - ended_before
    print(f"agent: {spent} CPU ticks for 1,500 requests, {by_ended} of them by threads that have ended")
    assert spent > 0
    # The margin is rounding only: each thread's time is cut to whole ticks on its own, so the live
    # threads' sum falls short of the process's by up to a tick per thread, in each reading.
    margin = spent // 10 + 2 * len(os.listdir(f"/proc/{agent.pid}/task"))
    assert by_ended <= margin, f"of {spent} ticks the 1,500 requests took, {by_ended} were spent by threads " \
                               "that have ended since"
    home = os.stat(f"/proc/{agent.pid}/ns/net").st_ino

    def namespaces() -> set[int]:
        out = set()
        for t in os.listdir(f"/proc/{agent.pid}/task"):
            with contextlib.suppress(FileNotFoundError):
                out.add(os.stat(f"/proc/{agent.pid}/task/{t}/ns/net").st_ino)
        return out

    # A worker sends its reply before it returns home: wait for the last one (60 s only stops a hung test).
    deadline = time.monotonic() + 60
    while namespaces() != {home} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert namespaces() == {home}
