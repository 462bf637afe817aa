"""`netkit run/ps/inspect/...` through the runtime server beside the agent (netkit/cli/thin.py,
netkit/cli/runtime_server.py) against the same commands run in the client's own process."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Iterator

import pytest
from harness.agent import Agent

from netkit.cli import thin
from tests.runtime.conftest import Runtime
from tests.sandbox import Sandbox


class Via(Runtime):
    """A runtime whose commands find the agent at ``agent_socket`` ("" = none: the CLI runs in-process)."""

    def __init__(self, box: Sandbox, root: str, agent_socket: str) -> None:
        super().__init__(box, root)
        self.agent_socket = agent_socket

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, NETKIT_AGENT_SOCKET=self.agent_socket or "/nonexistent/netkit-agent.sock")


@pytest.fixture
def ways(inproc: Sandbox, agent: str, tmp_path: os.PathLike[str]) -> Iterator[tuple[Via, Via]]:
    """(through the runtime server, without it): one sandbox host, one runtime root."""
    root = os.path.join(str(tmp_path), "root")
    served, direct = Via(inproc, root, agent), Via(inproc, root, "")
    try:
        yield served, direct
    finally:
        direct.cleanup()


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def _wait_line(proc: subprocess.Popen[str], text: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == text, (line, proc.stderr.read() if proc.stderr else "")


def _containers(rt: Via) -> tuple[str, list[dict[str, Any]], str]:
    """Start the same set of containers; (ps -a, inspect of them all, port web) once they are settled."""
    rt("run", "-d", "--name", "web", "--hostname", "web", "-p", "8080:80", "-l", "role=front", "--",
       "sleep", "300")
    rt("run", "-d", "--name", "quiet", "--hostname", "quiet", "--net=none", "-e", "A=1", "--", "sleep", "300")
    rt("run", "-d", "--name", "joined", "--hostname", "joined", "--net=container:web", "--", "sleep", "300")
    failed = rt("run", "--name", "failed", "--hostname", "failed", "--net=none", "--", "sh", "-c", "exit 3",
                check=False)
    assert failed.returncode == 3, failed.stderr
    rt("run", "-d", "--name", "stopped", "--hostname", "stopped", "--", "sleep", "300")
    rt("stop", "-t", "0", "stopped")
    names = ("web", "quiet", "joined", "failed", "stopped")
    return rt("ps", "-a").stdout, json.loads(rt("inspect", *names).stdout), rt("port", "web").stdout


def _normal(ps: str, inspected: list[dict[str, Any]], ports: str) -> tuple[str, list[dict[str, Any]], str]:
    """What differs from one run of the same containers to the next: ids, pids, times, leased addresses."""
    for c in inspected:
        cid = c["Id"]
        ps = ps.replace(cid[:12], f"<{c['Name']}>")
        c["Id"], c["Created"], c["LogPath"] = c["Name"], 0, c["LogPath"].replace(cid, "<id>")
        c["NetworkSettings"]["SandboxKey"] = c["NetworkSettings"]["SandboxKey"].replace(cid, "<id>")
        c["State"]["Pid"] = bool(c["State"]["Pid"])
        c["NetworkSettings"]["Addresses"] = [a.split("/")[1] for a in c["NetworkSettings"]["Addresses"]]
        for where in (c["NetworkSettings"], *c["NetworkSettings"]["Networks"].values()):
            where["IPAddress"], where["MacAddress"] = bool(where["IPAddress"]), bool(where["MacAddress"])
            for key in ("Aliases", "DNSNames"):
                where[key] = [n.replace(cid[:12], "<id>") for n in where.get(key) or []]
    # A joined container's namespace is reached through its owner's pid (/proc/PID/ns/net).
    inspected = json.loads(re.sub(r"/proc/\d+/", "/proc/<pid>/", json.dumps(inspected)))
    ps = re.sub(r"Up \d+ seconds", "Up", ps)
    return ps, inspected, ports


def test_run_through_the_server_and_without_it_give_the_same_ps_inspect_and_port(ways: tuple[Via, Via]) -> None:
    served, direct = ways
    seen = []
    for rt in (served, direct):
        seen.append(_normal(*_containers(rt)))
        rt("rm", "-f", "joined", "web", "quiet", "failed", "stopped")
        rt.assert_nothing_left()
    (ps, inspected, port), (ps_direct, inspected_direct, port_direct) = seen
    assert ps == ps_direct and port == port_direct
    for one, other in zip(inspected, inspected_direct, strict=True):
        assert one == other
    assert "Exited (3)" in seen[0][0] and "Exited (137)" in seen[0][0] and seen[0][2] == "80/tcp -> 0.0.0.0:8080\n"


def test_foreground_run_is_served_returns_the_exit_status_and_gets_the_signal(ways: tuple[Via, Via]) -> None:
    served, direct = ways
    script = ("import signal,sys,time\n"
              "signal.signal(signal.SIGINT, lambda s, f: (print('got', s, flush=True), sys.exit(5)))\n"
              "print('ready', flush=True)\ntime.sleep(300)")
    for rt in (served, direct):
        proc = rt.popen("run", "--rm", "--net=none", "--", sys.executable, "-u", "-c", script)
        _wait_line(proc, "ready")
        # Served, the command runs in the server's forked child: the client has no child process;
        # without the server the client itself is the container's supervisor.
        assert bool(_children(proc.pid)) is (rt is direct)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)  # a hang guard
        assert (proc.returncode, out) == (5, "got 2\n"), err
    assert served("run", "--rm", "--net=none", "--", "sh", "-c", "exit 42", check=False).returncode == 42
    proc = served.popen("run", "--rm", "--name", "killed", "--net=none", "--", "sh", "-c", "echo ready; sleep 300")
    _wait_line(proc, "ready")
    os.kill(served.inspect("killed")["State"]["Pid"], signal.SIGKILL)
    assert proc.wait(timeout=120) == 137  # killed by a signal: 128 + 9, as Docker reports


def test_detached_run_returns_while_the_container_runs_and_stop_ends_it(ways: tuple[Via, Via]) -> None:
    served, _ = ways
    cid = served("run", "-d", "--name", "bg", "--net=none", "--", "sleep", "300").stdout.strip()
    state = served.inspect("bg")["State"]
    assert state["Running"] and os.path.exists(f"/proc/{state['Pid']}")
    assert cid[:12] in served("ps").stdout
    served("stop", "-t", "0", "bg")
    assert "Exited (137)" in served("ps", "-a").stdout and not os.path.exists(f"/proc/{state['Pid']}")
    served("rm", "bg")


def test_the_server_listens_beside_the_agent_and_goes_with_it(tmp_path: os.PathLike[str]) -> None:
    sock = os.path.join(str(tmp_path), "agent.sock")
    agent = Agent(sock).start()
    try:
        path = thin.socket_path({"NETKIT_AGENT_SOCKET": sock})
        assert os.path.dirname(path) == str(tmp_path)
        deadline = time.monotonic() + 30  # a hang guard: the server binds as the agent starts
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert os.stat(path).st_mode & 0o777 == 0o600
        server = _children(agent.pid)
        assert len(server) == 1
    finally:
        assert agent.stop() == ""
    assert not os.path.exists(path) and not os.path.exists(f"/proc/{server[0]}")


def _server(path: str) -> tuple[subprocess.Popen[bytes], int]:
    """`python -m netkit.cli.runtime_server PATH FD` as `netkit agent` starts it; (process, the pipe's write end)."""
    alive_r, alive_w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "netkit.cli.runtime_server", path, str(alive_r)],
                            pass_fds=(alive_r,))
    os.close(alive_r)
    return proc, alive_w


def _listening(path: str, proc: subprocess.Popen[bytes]) -> int:
    """The inode of ``path`` once it exists (a hang guard only: the server binds as it starts)."""
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    return os.stat(path).st_ino


def _accepts(path: str, proc: subprocess.Popen[bytes]) -> bool:
    """True once a connection to ``path`` is accepted (the file may still be the ended server's at first)."""
    deadline = time.monotonic() + 60  # a hang guard
    while proc.poll() is None and time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            if s.connect_ex(path) == 0:
                return True
        time.sleep(0.02)
    return False


def test_a_second_server_on_the_same_path_waits_for_the_first_and_an_ended_agent_ends_its_server(
        tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(str(tmp_path), thin.SOCKET_NAME)
    first, first_alive = _server(path)
    second, second_alive = _server(path)
    try:
        inode = _listening(path, first)
        env = dict(os.environ, NETKIT_AGENT_SOCKET=os.path.join(str(tmp_path), "agent.sock"))
        ps = [sys.executable, "-m", "netkit", "--root", os.path.join(str(tmp_path), "root"), "ps"]
        assert subprocess.run(ps, env=env, capture_output=True, check=True).stdout.startswith(b"CONTAINER ID")
        # The second (a replacing agent's, or one that lost the start-up race) has not taken the path.
        assert os.stat(path).st_ino == inode and second.poll() is None
        os.close(first_alive)  # the first one's agent is gone: it ends and lets the second one serve
        assert first.wait(timeout=60) == 0
        _listening(path, second)
        assert _accepts(path, second)
    finally:
        for proc, alive in ((first, first_alive), (second, second_alive)):
            with contextlib.suppress(OSError):
                os.close(alive)
            proc.wait(timeout=60)
    assert not os.path.exists(path)


def test_which_command_lines_go_to_the_server() -> None:
    assert thin.verb_of(["--root", "/r", "run", "-d", "--", "x"]) == ("run", ["-d", "--", "x"])
    assert thin.verb_of(["--root=/r", "ps"]) == ("ps", [])
    assert thin.verb_of(["--version"]) == ("", []) and thin.verb_of([]) == ("", [])
    as_root = os.geteuid() == 0
    assert thin.wanted(["ps", "-a"], {}) is as_root
    assert not thin.wanted(["ps"], {"NETKIT_AGENT": "off"})
    assert not thin.wanted(["network", "ls"], {}) and not thin.wanted(["cni", "install"], {})
    # A foreground run or exec with a terminal for stdin stays in the terminal's process group.
    leader, follower = os.openpty()
    saved = os.dup(0)
    try:
        os.dup2(follower, 0)
        assert not thin.wanted(["run", "--", "sh"], {}) and not thin.wanted(["exec", "c", "--", "sh"], {})
        assert thin.wanted(["run", "-d", "--", "sh"], {}) is as_root
    finally:
        os.dup2(saved, 0)
        for fd in (saved, leader, follower):
            os.close(fd)


def test_the_client_finds_the_server_beside_the_agents_default_socket() -> None:
    from netkit.agent import protocol

    assert thin.DEFAULT_AGENT_SOCKET == protocol.DEFAULT_SOCKET
    assert thin.socket_path({}) == os.path.join(os.path.dirname(protocol.DEFAULT_SOCKET), thin.SOCKET_NAME)


def test_a_served_command_imports_neither_click_nor_the_runtime(ways: tuple[Via, Via]) -> None:
    _, direct = ways
    for rt in ways:
        argv = [sys.executable, "-X", "importtime", "-m", "netkit", "--root", rt.root, "ps"]
        proc = subprocess.run(argv, env=rt.env, capture_output=True, text=True, check=True)
        imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
        assert proc.stdout.startswith("CONTAINER ID")
        heavy = {m for m in imported if m.split(".")[0] == "click" or m.startswith("netkit.runtime")}
        assert ({"click", "netkit.runtime.state"} <= heavy) if rt is direct else not heavy, sorted(heavy)


def test_a_served_container_lives_in_the_callers_cgroup(ways: tuple[Via, Via]) -> None:
    from netkit.cli import runtime_server

    unified = runtime_server.cgroup_mounts().get("")
    assert unified, "no cgroup2 hierarchy mounted"
    group = os.path.join(unified, f"netkit-test-{os.getpid()}")
    os.mkdir(group)
    try:
        for rt in ways:
            # The caller moves itself into the group, then runs the command; the container reports its own.
            def join_group(procs: str = os.path.join(group, "cgroup.procs")) -> None:
                with open(procs, "w") as f:
                    f.write(str(os.getpid()))

            proc = subprocess.run(rt.argv("run", "--rm", "--net=none", "--", "cat", "/proc/1/cgroup"), env=rt.env,
                                  capture_output=True, text=True, check=True, preexec_fn=join_group)
            assert f"0::/{os.path.basename(group)}\n" in proc.stdout, (rt is ways[0], proc.stdout)
    finally:
        os.rmdir(group)


def test_a_root_with_fewer_privileges_runs_its_command_itself(ways: tuple[Via, Via]) -> None:
    # Served, a root under no_new_privs (or with capabilities dropped) would have the server run its
    # command with the server's full privileges: it is not served, and the whole CLI runs in its process.
    served, _ = ways
    argv = ["setpriv", "--no-new-privs", sys.executable, "-X", "importtime", "-m", "netkit", "--root", served.root, "ps"]
    proc = subprocess.run(argv, env=served.env, capture_output=True, text=True, check=True)
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert proc.stdout.startswith("CONTAINER ID") and "click" in imported
