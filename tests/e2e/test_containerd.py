"""containerd 1.6's `ctr run --cni` drives netkit's plugins: ADD when the task starts, DEL when it ends.

containerd and ctr run in the suite's containerd sandbox (harness/containerd.py): their own mount
namespace, where /opt/cni/bin, /etc/cni/net.d and /var/lib/cni are this test's temp dirs, inside a
throwaway sandbox host network namespace.  ctr execs the launchers `netkit cni install` writes, with
netkit's default conflist, exactly as it would on a host, with no agent set up: the first plugin exec
starts the agent (on the test's socket, which ctr's environment names), the fixture stops it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
from typing import Iterator

import pytest

from harness import containerd as hc
from harness.agent import agent_processes
from netkit.agent import control
from netkit.launch import install
from tests.e2e.podman import poll
from tests import sandbox as sb
from tests.e2e.containerd import running

SUBNET = ipaddress.ip_network("10.77.0.0/24")
GATEWAY = "10.77.0.1"


@pytest.fixture
def ctr(tmp_path: os.PathLike[str]) -> Iterator[tuple[hc.Containerd, sb.Sandbox]]:
    with running(str(tmp_path), SUBNET, hc.Containerd) as (daemon, box):
        yield daemon, box


def _task(daemon: hc.Containerd, name: str, *argv: str) -> str:
    """What ``argv`` printed, run as a ``ctr run --rm --cni`` task that must succeed.  The task writes
    its output to a file of a bind mount: ctr 1.6 can lose the stdout of a task that exits at once
    (seen once in a full run: exit status 0, nothing printed)."""
    out = os.path.join(daemon.top, f"out-{name}")
    os.makedirs(out)
    run = daemon.ctr("run", "--rm", "--cni", "--mount", f"type=bind,src={out},dst=/out,options=rbind:rw",
                     hc.IMAGE, name, "sh", "-c", '"$@" > /out/stdout 2>&1', "sh", *argv, check=False)
    with open(os.path.join(out, "stdout"), encoding="utf-8", errors="replace") as f:
        printed = f.read()
    assert run.returncode == 0, run.stderr + run.stdout + printed
    return printed


def _run(daemon: hc.Containerd, name: str) -> None:
    """``ctr run --rm --cni`` of a task that pings the bridge's gateway (no route without its address)."""
    printed = _task(daemon, name, "ping", "-c1", "-W2", GATEWAY)
    assert "1 packets received" in printed, printed  # a real echo reply from the bridge's gateway


def _address(daemon: hc.Containerd, name: str) -> ipaddress.IPv4Interface:
    """The address a ``ctr run --rm --cni`` task sees on its eth0."""
    printed = _task(daemon, name, "ip", "-4", "-o", "addr", "show", "eth0")
    found = re.search(r"inet (\d+\.\d+\.\d+\.\d+/\d+)", printed)
    assert found, printed
    return ipaddress.IPv4Interface(found.group(1))


def test_ctr_run_cni_attaches_the_task_and_detaches_it_when_it_ends(ctr: tuple[hc.Containerd, sb.Sandbox]) -> None:
    daemon, box = ctr
    assert _address(daemon, "ctr-e2e-ip").network == SUBNET
    _run(daemon, "ctr-e2e")
    # ctr removed the network when the task ended: no veth, no lease, no cached result.
    veths = box.host.run("ip", "-o", "link", "show", "type", "veth").stdout
    assert veths.strip() == "", veths
    assert box.leases(install.DEFAULT_NETWORK) == []
    assert os.listdir(os.path.join(daemon.top, "cni-cache", "results")) == []


def test_the_first_ctr_run_starts_the_agent_that_serves_the_next(ctr: tuple[hc.Containerd, sb.Sandbox]) -> None:
    daemon, box = ctr
    socket = daemon.env["NETKIT_AGENT_SOCKET"]
    _run(daemon, "first")
    # Started after the first exec's own answer, warm once its socket accepts: polled, not timed.
    first = poll(lambda: _served(socket), hc.START_WAIT_S)
    assert first is not None, "no agent answered after the first task's plugins ran"
    _run(daemon, "second")
    after = _served(socket)
    assert after is not None and after[0] == first[0] and after[1] >= first[1] + 2  # ADD and DEL of "second"
    assert [pid for pid, sock in agent_processes().items() if sock == socket] == [first[0]]
    assert box.leases(install.DEFAULT_NETWORK) == []


def _served(socket: str) -> tuple[int, int] | None:
    """(pid, requests served) of the agent on ``socket``, or None."""
    try:
        found = control.status(socket)
    except control.NoAgent:
        return None
    assert found.status is not None
    return found.pid, int(found.status["requests_served"])



def test_a_run_ending_leaves_a_concurrent_runs_containerd_working(tmp_path: os.PathLike[str]) -> None:
    # Both runs' shims keep their sockets under /run/containerd: each run's is a tmpfs of its own
    # mount namespace, so the run that started first and ends first cannot take the other's away.
    existed = os.path.lexists(hc.RUN_STATE)
    with contextlib.ExitStack() as second_run:
        with contextlib.ExitStack() as first_run:
            first, _ = first_run.enter_context(running(os.path.join(tmp_path, "first"), SUBNET, hc.Containerd))
            first.ctr("run", "-d", hc.IMAGE, "first-task", "sleep", "600")
            second, _ = second_run.enter_context(running(os.path.join(tmp_path, "second"), SUBNET, hc.Containerd))
            second.ctr("run", "-d", hc.IMAGE, "second-task", "sleep", "600")
            _end(first, "first-task")
        # The second's shim still answers (ctr reaches the task through it), its mount point still there.
        assert os.path.isdir(hc.RUN_STATE)
        assert re.search(r"second-task\s+\d+\s+RUNNING", second.ctr("task", "ls").stdout)
        _end(second, "second-task")
    assert os.path.lexists(hc.RUN_STATE) == existed
    # Each run's containers under a cgroup parent of its own: the second's task, running while the first
    # ended, kept no cgroup of either alive past its own run.
    assert first.ctr_cgroup != second.ctr_cgroup
    assert hc.cgroup_dirs(first.ctr_cgroup) == hc.cgroup_dirs(second.ctr_cgroup) == []


def _end(daemon: hc.Containerd, task: str) -> None:
    """Kill ``task`` and delete it and its container (through its shim)."""
    daemon.ctr("task", "kill", "-s", "SIGKILL", task)
    poll(lambda: re.search(rf"{task}\s+\d+\s+STOPPED", daemon.ctr("task", "ls").stdout), hc.START_WAIT_S)
    daemon.ctr("task", "delete", task)
    daemon.ctr("container", "delete", task)
