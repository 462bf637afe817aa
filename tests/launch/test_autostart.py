"""The agent on by default: a launcher that finds none starts exactly one, replaces a killed or an
other-version one, and starts nothing when told not to.

Real launchers (the default install, `plugin_bin`) exec'd in a sandbox host, each test with an agent
socket in its own temp dir: every agent here is the test's, and the test stops it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from harness.agent import REPO, START_TIMEOUT_S, agent_processes, stop_started

from netkit import __version__
from netkit.agent import control, lifelock, protocol
from netkit.launch import autostart, install
from tests import sandbox as sb
from tests.waiting import until

VERSION_CONF = b'{"cniVersion": "1.0.0"}'


@pytest.fixture
def host(plugin_bin: str, tmp_path: Path) -> Iterator[sb.Sandbox]:
    """A sandbox host whose plugins ask (and start) the agent on a socket in the test's temp dir."""
    with sb.sandbox(plugin_bin, str(tmp_path / "leases"), str(tmp_path / "agent.sock")) as box:
        try:
            yield box
        finally:
            stop_started(box.agent_socket)


def _status(path: str) -> dict[str, Any] | None:
    try:
        return control.status(path).status
    except control.NoAgent:
        return None


def _agents_on(path: str) -> list[int]:
    return sorted(pid for pid, sock in agent_processes().items() if sock == path)


def _version_call(box: sb.Sandbox, exe: str = "netkit-ipam", **extra: str) -> dict[str, Any]:
    code, out = box.exec_plugin(exe, {**box.env("VERSION"), **extra}, VERSION_CONF)
    assert code == 0 and out["cniVersion"] == "1.0.0"
    return out


def _serving(box: sb.Sandbox) -> dict[str, Any]:
    """The status of the agent once it serves on the box's socket (and wrote its lock file)."""
    return until(lambda: (s := _status(box.agent_socket)) and lifelock.holder(box.agent_socket) == (s["pid"], s["version"])
                  and s, f"an agent serving on {box.agent_socket}", patience=START_TIMEOUT_S)


def test_32_launchers_at_once_start_exactly_one_agent_and_all_answer(host: sb.Sandbox) -> None:
    conf = json.dumps(sb.bridge_conf(host, name="burst")).encode()
    exe = os.path.join(host.bin_dir, "netkit-ipam")
    procs = [subprocess.Popen(["ip", "netns", "exec", host.host.name, exe], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=host.env("ADD", container_id=f"c{i}", netns=host.host.path))
             for i in range(32)]
    answers = [p.communicate(conf, timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 32, [err for _, err in answers]
    addresses = [json.loads(out)["ips"][0]["address"] for out, _ in answers]
    assert len(set(addresses)) == 32 and len(host.leases("burst")) == 32
    status = _serving(host)
    assert _agents_on(host.agent_socket) == [status["pid"]]     # exactly one agent was born


def test_a_killed_agent_is_replaced_by_the_next_call(host: sb.Sandbox) -> None:
    _version_call(host)
    first = _serving(host)
    os.kill(first["pid"], signal.SIGKILL)
    until(lambda: lifelock.is_free(host.agent_socket), "the killed agent's lock released", patience=START_TIMEOUT_S)
    assert os.path.exists(host.agent_socket)                     # stale: nobody listens
    _version_call(host)                                          # answered in-process, starts a new agent
    second = _serving(host)
    assert second["pid"] != first["pid"] and _agents_on(host.agent_socket) == [second["pid"]]
    _version_call(host)
    assert _status(host.agent_socket)["requests_served"] == 1    # type: ignore[index]


def _other_version(tmp_path: Path) -> str:
    """A copy of the netkit package that says it is another version; the directory to import it from."""
    top = tmp_path / "other"
    shutil.copytree(os.path.join(REPO, "netkit"), top / "netkit", ignore=shutil.ignore_patterns("__pycache__"))
    init = top / "netkit" / "__init__.py"
    init.write_text(init.read_text().replace(f'__version__ = "{__version__}"', '__version__ = "0.0.0-other"'))
    return str(top)


def test_an_agent_of_another_version_is_replaced(host: sb.Sandbox, tmp_path: Path) -> None:
    other = _other_version(tmp_path)
    old = subprocess.Popen([sys.executable, "-m", "netkit", "agent", "--socket", host.agent_socket], cwd=other,
                           env=dict(os.environ, PYTHONPATH=other), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        before = _serving(host)
        assert before["version"] == "0.0.0-other" and before["pid"] == old.pid
        _version_call(host)                 # "other version": answered in-process, a replacement started
        assert old.wait(timeout=START_TIMEOUT_S) == 0            # stopped gracefully by the replacement
        after = _serving(host)
        assert after["version"] == __version__ and _agents_on(host.agent_socket) == [after["pid"]]
    finally:
        if old.poll() is None:
            old.kill()
            old.wait()


def test_netkit_agent_off_runs_in_process_and_starts_nothing(host: sb.Sandbox) -> None:
    _version_call(host, NETKIT_AGENT="off")
    assert not os.path.exists(protocol.lock_path(host.agent_socket)) and _agents_on(host.agent_socket) == []


def test_no_agent_launchers_start_nothing(host: sb.Sandbox, tmp_path: Path) -> None:
    bin_dir = str(tmp_path / "no-agent-bin")
    install.install_plugins(bin_dir, spawn=False)
    _version_call(host, os.path.join(bin_dir, "netkit-ipam"))
    assert not os.path.exists(protocol.lock_path(host.agent_socket)) and _agents_on(host.agent_socket) == []


def test_the_log_is_emptied_past_its_cap_at_start(host: sb.Sandbox) -> None:
    log = protocol.log_path(host.agent_socket)
    with open(log, "wb") as f:
        f.write(b"x" * (autostart.LOG_CAP + 1))
    _version_call(host)
    status = _serving(host)
    with open(log, "rb") as f:
        text = f.read()
    assert not text.startswith(b"x") and f"pid {status['pid']}".encode() in text


def _netkit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netkit", *args], capture_output=True, text=True, timeout=120,
                          env=env)


def test_status_and_stop(host: sb.Sandbox) -> None:
    _version_call(host)
    pid = _serving(host)["pid"]
    shown = _netkit("agent", "status", "--socket", host.agent_socket)
    assert shown.returncode == 0 and f"{pid}" in shown.stdout and "requests served" in shown.stdout
    as_json = json.loads(_netkit("agent", "status", "--json", "--socket", host.agent_socket).stdout)
    assert set(as_json) == {"pid", "version", "uptime_s", "requests_served", "rss_kib", "hwm_kib", "socket"}
    assert as_json["rss_kib"] > 0 and as_json["hwm_kib"] >= as_json["rss_kib"] and as_json["socket"] == host.agent_socket
    stopped = _netkit("agent", "stop", "--socket", host.agent_socket)
    assert stopped.returncode == 0 and f"pid {pid}" in stopped.stdout
    assert lifelock.is_free(host.agent_socket) and not os.path.exists(host.agent_socket)
    gone = _netkit("agent", "status", "--socket", host.agent_socket)
    assert gone.returncode == 1 and len(gone.stderr.strip().splitlines()) == 1 and "no agent" in gone.stderr


def test_stop_lets_the_request_in_flight_finish(host: sb.Sandbox, tmp_path: Path) -> None:
    """SIGTERM during a request: the request is answered (by the agent, not a fallback), then it exits 0."""
    agent = subprocess.Popen([sys.executable, "-m", "netkit", "agent", "--socket", host.agent_socket], cwd=REPO,
                             env=dict(os.environ, NETKIT_FAILPOINTS="agent.after-setns=sleep:1500"),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        _serving(host)
        call = subprocess.Popen(["ip", "netns", "exec", host.host.name, os.path.join(host.bin_dir, "netkit-ipam")],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=host.env("VERSION"))
        assert call.stdin is not None
        call.stdin.write(VERSION_CONF)
        call.stdin.close()
        until(lambda: _in_flight(agent.pid), "the request in flight", patience=START_TIMEOUT_S)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=START_TIMEOUT_S) == 0
        assert call.stdout is not None and json.loads(call.stdout.read())["cniVersion"] == "1.0.0"
        assert call.wait(timeout=60) == 0
        assert not os.path.exists(host.agent_socket)            # ours: removed
        assert _agents_on(host.agent_socket) == []               # the launcher saw an answer: started none
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()


def _in_flight(pid: int) -> bool:
    """True while a worker of agent ``pid`` is inside a caller's network namespace (a request in flight)."""
    home = os.readlink(f"/proc/{pid}/ns/net")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            if os.readlink(f"/proc/{pid}/task/{tid}/ns/net") != home:
                return True
        except OSError:
            pass
    return False


def test_a_socket_activated_agent_serves_the_socket_it_is_handed(host: sb.Sandbox) -> None:
    """What systemd does (LISTEN_PID, LISTEN_FDS=1, the listening socket as fd 3), done by hand."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(host.agent_socket)
    os.chmod(host.agent_socket, 0o600)
    listener.listen(64)
    exec_agent = ("import os, sys; os.dup2(int(sys.argv[1]), 3); os.environ.update(LISTEN_PID=str(os.getpid()), "
                  "LISTEN_FDS='1'); os.execv(sys.executable, [sys.executable, '-m', 'netkit', 'agent', "
                  "'--socket', sys.argv[2]])")
    agent = subprocess.Popen([sys.executable, "-c", exec_agent, str(listener.fileno()), host.agent_socket], cwd=REPO,
                             pass_fds=(listener.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    listener.close()
    try:
        _version_call(host)                 # queued on the listening socket until the agent serves it
        status = _serving(host)
        assert status["pid"] == agent.pid and status["requests_served"] == 1
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=START_TIMEOUT_S) == 0
        assert os.path.exists(host.agent_socket)                 # systemd's socket: not the agent's to remove
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        os.unlink(host.agent_socket)


def test_a_second_agent_by_hand_is_refused_with_one_line(host: sb.Sandbox) -> None:
    _version_call(host)
    pid = _serving(host)["pid"]
    second = _netkit("agent", "--socket", host.agent_socket)
    assert second.returncode == 1 and f"pid {pid}" in second.stderr.strip().splitlines()[-1]


def test_units_are_a_socket_activated_agent(tmp_path: Path) -> None:
    units = install.agent_units(socket="/run/netkit/agent.sock")
    service, sock = units[install.UNIT_NAME], units[install.SOCKET_UNIT_NAME]
    assert f"ExecStart={sys.executable} -m netkit agent --socket /run/netkit/agent.sock" in service
    assert "Restart=on-failure" in service and f"Requires={install.SOCKET_UNIT_NAME}" in service
    assert "KillMode=process" in service.splitlines()  # the DNS daemon a plugin started outlives a restart
    assert "ListenStream=/run/netkit/agent.sock" in sock and "SocketMode=0600" in sock
    for name, text in units.items():
        (tmp_path / name).write_text(text)
    # systemd-analyze verifies unit files offline (no systemd as PID 1 needed); the binary of ExecStart exists.
    proc = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / n) for n in units)],
                          capture_output=True, text=True, timeout=60)
    problems = [line for line in proc.stderr.splitlines() if str(tmp_path) in line]
    assert proc.returncode == 0 and not problems, proc.stderr


def test_uninstall_leaves_nothing(tmp_path: Path, plugin_bin: str) -> None:
    tmp = str(tmp_path)
    sock = f"{tmp}/run/agent.sock"
    os.makedirs(f"{tmp}/run")
    env = dict(os.environ, NETKIT_AGENT_SOCKET=sock)
    dirs = ["--bin-dir", f"{tmp}/bin", "--conf-dir", f"{tmp}/conf", "--unit-dir", f"{tmp}/units"]
    installed = _netkit("cni", "install", *dirs, "--agent", env=env)
    assert installed.returncode == 0, installed.stderr
    with open(f"{tmp}/bin/not-netkit", "w") as f:
        f.write("#!/bin/sh\n")
    with sb.sandbox(f"{tmp}/bin", f"{tmp}/leases", sock) as box:
        _version_call(box)                   # the default install: an agent starts
        _serving(box)
    gone = _netkit("cni", "uninstall", *dirs, env=env)
    assert gone.returncode == 0, gone.stderr
    assert "stopped the netkit agent" in gone.stdout
    assert os.listdir(f"{tmp}/bin") == ["not-netkit"]           # only netkit's launchers go
    assert os.listdir(f"{tmp}/conf") == [] and os.listdir(f"{tmp}/units") == [] and os.listdir(f"{tmp}/run") == []
    assert _agents_on(sock) == []


def test_install_stops_an_agent_of_another_version(host: sb.Sandbox, tmp_path: Path) -> None:
    """An upgrade: `netkit cni install` stops the agent of the version it replaces (the next plugin
    exec starts one of its own)."""
    other = _other_version(tmp_path)
    old = subprocess.Popen([sys.executable, "-m", "netkit", "agent", "--socket", host.agent_socket], cwd=other,
                           env=dict(os.environ, PYTHONPATH=other), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert _serving(host)["version"] == "0.0.0-other"
        tmp = str(tmp_path)
        done = _netkit("cni", "install", "--bin-dir", f"{tmp}/bin", "--conf-dir", f"{tmp}/conf",
                       "--socket", host.agent_socket)
        assert done.returncode == 0, done.stderr
        assert f"version 0.0.0-other (pid {old.pid})" in done.stdout
        assert old.wait(timeout=START_TIMEOUT_S) == 0 and lifelock.is_free(host.agent_socket)
    finally:
        if old.poll() is None:
            old.kill()
            old.wait()


def test_two_installations_do_not_replace_each_others_agent_on_every_call(host: sb.Sandbox, tmp_path: Path) -> None:
    """Launchers of another version meeting a fresh replacement leave it serving (and answer in-process)."""
    other = _other_version(tmp_path)
    other_bin = str(tmp_path / "other-bin")
    subprocess.run([sys.executable, "-c", f"from netkit.launch import install; install.install_plugins({other_bin!r})"],
                   cwd=other, env=dict(os.environ, PYTHONPATH=other), check=True)
    _version_call(host, os.path.join(other_bin, "netkit-ipam"))      # the other version's agent starts
    assert _serving(host)["version"] == "0.0.0-other"
    _version_call(host)                                               # ours replaces it
    ours = until(lambda: (s := _serving(host))["version"] == __version__ and s, "our replacement", patience=START_TIMEOUT_S)
    assert lifelock.recent_replacement(host.agent_socket)
    _version_call(host, os.path.join(other_bin, "netkit-ipam"))      # the other's launcher leaves it alone
    assert _serving(host)["pid"] == ours["pid"] and _agents_on(host.agent_socket) == [ours["pid"]]
