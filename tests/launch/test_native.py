"""The C launcher (netkit/launch/launcher.c): what it sends the agent, when it falls back to the Python
launcher, and that its answers through a real agent are the Python launcher's.

A fake agent (a thread on a socket in the test's temp dir) sees the bytes on the wire; the real one is
the session's `agent` fixture.  Every launcher here points at a socket of the test's own.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from harness.agent import NO_AGENT_ENV

from netkit import plugins
from netkit.agent import client, control, protocol
from netkit.launch import install, invoker, native, uninstall
from tests import sandbox as sb

VERSION_CONF = b'{"cniVersion": "0.4.0"}'


def _status_conf(data_dir: str) -> bytes:
    """A netkit-ipam STATUS config: the Python launcher answers it (exit 0, nothing on stdout) only
    when it got this stdin whole (with the agent off the C launcher answers VERSION itself)."""
    return json.dumps({"cniVersion": "1.1.0", "name": "n", "type": "netkit-bridge",
                       "ipam": {"type": "netkit-ipam", "ranges": [[{"subnet": "10.9.0.0/24"}]],
                                "dataDir": data_dir}}).encode()


class FakeAgent:
    """Answers each connection with the next of ``replies`` (then NOT_SERVED); records what came."""

    def __init__(self, path: str, replies: list[bytes]) -> None:
        self.path, self.replies = path, replies
        self.requests: list[tuple[bytes, bytes, str]] = []  # header, stdin, the namespace it was handed
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(16)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            with conn:
                header, stdin, fds = protocol.recv_request(conn)
                netns = os.readlink(f"/proc/self/fd/{fds[0]}") if fds else ""
                for fd in fds:
                    os.close(fd)
                self.requests.append((header, stdin, netns))
                reply = self.replies.pop(0) if self.replies else _reply(protocol.NOT_SERVED)
                conn.sendall(reply)

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(timeout=10)


def _reply(code: int, stdout: bytes = b"", length: int | None = None) -> bytes:
    return protocol._REPLY.pack(code, len(stdout) if length is None else length) + stdout


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeAgent]:
    agent = FakeAgent(str(tmp_path / "agent.sock"), [])
    yield agent
    agent.close()


def _run(exe: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _env(socket_path: str, **extra: str) -> dict[str, str]:
    # LC_ALL: a Python launcher in the C locale would add LC_CTYPE (PEP 538) to what it forwards.
    return {"CNI_COMMAND": "VERSION", "PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8",
            "NETKIT_AGENT_SOCKET": socket_path, **extra}


def test_the_request_is_the_python_clients_and_the_reply_is_passed_through(plugin_bin: str, fake: FakeAgent) -> None:
    """Header bytes as client.header writes them (escapes, /proc/self rewritten to the launcher's pid),
    stdin as sent, the caller's namespace attached; the agent's stdout and exit status are the launcher's."""
    fake.replies.append(_reply(7, b'{"answered": true}'))
    env = _env(fake.path, CNI_COMMAND="ADD", CNI_NETNS="/proc/self/ns/net", CNI_CONTAINERID="c1",
               ODD='q"b\\s\tn\nr\rb\bf\fc\x01d\x7fe', EQ="v=1=2")
    proc = _run(os.path.join(plugin_bin, "netkit-bridge"), env)
    out, err = proc.communicate(b"the stdin\x00\xff", timeout=60)
    assert (proc.returncode, out) == (7, b'{"answered": true}'), err
    [(header, stdin, netns)] = fake.requests
    expected = client.header("netkit-bridge", {**env, "CNI_NETNS": f"/proc/{proc.pid}/ns/net"})
    assert header == expected and stdin == b"the stdin\x00\xff"
    assert netns == os.readlink("/proc/self/ns/net")


def test_the_python_launcher_forwards_the_same_header(plugin_bin: str, fake: FakeAgent) -> None:
    exe = os.path.join(plugin_bin, "netkit-portmap")
    env = _env(fake.path, CNI_COMMAND="DEL", CNI_NETNS="/proc/thread-self/ns/net", X="a\x02\\")
    fake.replies += [_reply(0), _reply(0)]
    procs = [_run(exe, env), _run(native.fallback_path(exe), env)]
    assert [p.communicate(VERSION_CONF, timeout=60)[0] for p in procs] == [b"", b""]
    headers = [h.replace(f'"/proc/{p.pid}/ns/net"'.encode(), b'"/proc/PID/ns/net"')
               for (h, _, _), p in zip(fake.requests, procs)]
    assert headers[0] == headers[1] and b'"/proc/PID/ns/net"' in headers[0]


@pytest.mark.parametrize("reply", [_reply(protocol.NOT_SERVED, b"not this"), _reply(0, b"x", length=1 << 30),
                                   _reply(0, b"cut sh", length=100), b"\x00\x00"],
                         ids=["not-served", "absurd-length", "cut-reply", "cut-head"])
def test_unserved_or_broken_replies_fall_back_with_stdin_replayed(plugin_bin: str, fake: FakeAgent,
                                                                  reply: bytes) -> None:
    """The Python launcher answers (in-process here: the fake agent serves it nothing), from the
    stdin the C launcher had consumed, and nothing the agent sent reaches stdout."""
    fake.replies.append(reply)
    proc = _run(os.path.join(plugin_bin, "netkit-ipam"), _env(fake.path, CNI_COMMAND="STATUS"))
    out, err = proc.communicate(_status_conf(os.path.dirname(fake.path)), timeout=60)
    assert (proc.returncode, out) == (0, b""), (out, err)
    assert len(fake.requests) == 2  # the C launcher's, then the Python launcher's own


@pytest.mark.parametrize("extra", [{"NETKIT_AGENT": "off"}, {"NON_ASCII": "caf\u00e9"}, {"CNI_COMMAND": ""}],
                         ids=["agent-off", "non-ascii", "about"])
def test_no_socket_contact_for_what_only_the_python_launcher_does(plugin_bin: str, fake: FakeAgent,
                                                                  extra: dict[str, str]) -> None:
    proc = _run(os.path.join(plugin_bin, "netkit-ipam"), _env(fake.path, **{"CNI_COMMAND": "STATUS", **extra}))
    out, err = proc.communicate(_status_conf(os.path.dirname(fake.path)), timeout=60)
    assert (proc.returncode, out) == (0, b""), (out, err)
    if extra.get("CNI_COMMAND") == "":
        assert err.startswith(b"netkit-ipam (netkit ")        # "about"
    # The Python launcher asks the agent itself unless NETKIT_AGENT=off or "about"; the C one never did.
    assert len(fake.requests) == (1 if "NON_ASCII" in extra else 0)


def test_a_stdin_past_the_c_launchers_bound_is_replayed_whole(plugin_bin: str) -> None:
    conf = json.dumps({"cniVersion": "0.4.0", "pad": "x" * (17 << 20)}).encode()
    proc = _run(os.path.join(plugin_bin, "netkit-ipam"), _env("/nonexistent/agent.sock"))
    out, err = proc.communicate(conf, timeout=120)
    assert proc.returncode == 0 and json.loads(out)["cniVersion"] == "0.4.0", err


def _normal(result: Any) -> Any:
    """A CNI result with what differs between two containers (addresses, MACs, host veth names) blanked."""
    if isinstance(result, dict):
        return {k: ("*" if k in ("address", "mac", "sandbox") or (k == "name" and v not in ("nkbr0", "eth0"))
                    else _normal(v)) for k, v in result.items()}
    if isinstance(result, (list, tuple)):
        return [_normal(v) for v in result]
    return result


def test_answers_through_the_agent_equal_the_python_launchers(plugin_bin: str, agent: str, tmp_path: Path) -> None:
    """bridge+IPAM and portmap ADD/CHECK/DEL and VERSION, one container through the C launchers and
    one through the Python launchers behind them: the same answers, every call served by the agent."""
    served = control.status(agent).status["requests_served"]
    with sb.sandbox(plugin_bin, str(tmp_path / "leases"), agent) as box:
        c_box, py_box = box, sb.Sandbox(box.host, os.path.join(plugin_bin, native.FALLBACK_DIR), box.data_dir,
                                        agent_socket=agent)
        answers: list[list[Any]] = []
        for b in (c_box, py_box):
            c = box.container()
            conf = sb.bridge_conf(box, name="native", cniVersion="0.4.0")
            calls = [b.call("netkit-bridge", "VERSION", VERSION_CONF)]
            calls.append(b.call("netkit-bridge", "ADD", conf, c))
            pm = {**conf, "type": "netkit-portmap", "prevResult": calls[-1][1],
                  "runtimeConfig": {"portMappings": [{"hostPort": 18080 + len(answers), "containerPort": 80,
                                                      "protocol": "tcp"}]}}
            pm.pop("ipam")
            calls.append(b.call("netkit-portmap", "ADD", pm, c))
            calls.append(b.call("netkit-bridge", "CHECK", {**conf, "prevResult": calls[1][1]}, c))
            calls.append(b.call("netkit-portmap", "CHECK", pm, c))
            calls.append(b.call("netkit-portmap", "DEL", pm, c))
            calls.append(b.call("netkit-bridge", "DEL", conf, c))
            assert [code for code, _ in calls] == [0] * len(calls), calls
            answers.append(_normal(calls))
        assert answers[0] == answers[1]
        assert answers[0][1][1]["ips"] and box.leases("native") == []
    assert control.status(agent).status["requests_served"] == served + 2 * 7


def test_install_without_a_compiler_writes_python_launchers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "/nonexistent/cc")
    bin_dir = str(tmp_path / "bin")
    notes: list[str] = []
    written = install.install_plugins(bin_dir, notes=notes)
    assert all(uninstall.is_launcher(p) and native.read_binary(p) is None for p in written)
    assert sorted(os.listdir(bin_dir)) == sorted(plugins.REGISTRY)    # no .netkit/: nothing behind them
    assert notes == ["Python launchers (no C launcher: no C compiler (/nonexistent/cc: No such file or directory))"]
    assert install.plugins_current(bin_dir)


def test_a_failed_compile_writes_python_launchers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "cc -include /nonexistent/header.h")  # the compile fails
    notes: list[str] = []
    written = install.install_plugins(str(tmp_path / "bin"), notes=notes)
    assert all(native.read_binary(p) is None for p in written) and sorted(os.listdir(tmp_path / "bin")) == \
        sorted(plugins.REGISTRY)
    assert len(notes) == 1 and notes[0].startswith("Python launchers (no C launcher: cc failed: ")


@pytest.mark.parametrize("cc", ["/nonexistent/cc", "cc -include /nonexistent/header.h"])
def test_require_native_writes_nothing_when_no_c_launcher_is_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   cc: str) -> None:
    # What an earlier install left is kept as it was: nothing half-replaced.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "netkit-bridge").write_text("earlier")
    monkeypatch.setenv("CC", cc)
    with pytest.raises(install.NoNativeLauncher) as raised:
        install.install(str(bin_dir), str(tmp_path / "conf"), require_native=True, loopback=True)
    assert "\n" not in str(raised.value) and str(raised.value).startswith(
        f"no C launcher could be built, nothing installed or replaced in {bin_dir}: ")
    assert os.listdir(bin_dir) == ["netkit-bridge"] and (bin_dir / "netkit-bridge").read_text() == "earlier"
    assert not (tmp_path / "conf").exists()


def test_the_source_compiles_without_warnings(tmp_path: Path) -> None:
    args = native.compile_args(["cc", "-Wall", "-Wextra", "-Werror"], "netkit-ipam", sys.executable,
                               "/x/.netkit/netkit-ipam", protocol.DEFAULT_SOCKET, str(tmp_path / "out"))
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_is_own_launcher_knows_the_c_launchers_and_refuses_others(plugin_bin: str, tmp_path: Path) -> None:
    own = os.path.join(plugin_bin, "netkit-ipam")
    assert native.read_binary(own) is not None and invoker.is_own_launcher(own) and install.plugins_current(plugin_bin)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    shutil.copy("/bin/true", foreign / "netkit-ipam")                   # any other binary
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(own, moved / "netkit-ipam")                              # ours, without its Python launcher
    other = tmp_path / "other"
    (other / native.FALLBACK_DIR).mkdir(parents=True)
    shutil.copy(native.fallback_path(own), other / native.FALLBACK_DIR / "netkit-ipam")
    args = native.compile_args(["cc"], "netkit-ipam", "/usr/bin/python3-other", str(other / ".netkit/netkit-ipam"),
                               protocol.DEFAULT_SOCKET, str(other / "netkit-ipam"))
    subprocess.run(args, check=True, timeout=120)                        # another interpreter's
    for exe in (foreign, moved, other):
        assert not invoker.is_own_launcher(str(exe / "netkit-ipam")), exe
        assert uninstall.is_launcher(str(exe / "netkit-ipam")) == (exe != foreign)


def test_a_c_launcher_answers_with_no_agent_in_process(plugin_bin: str, tmp_path: Path) -> None:
    """NETKIT_AGENT=off through the exec'd Python launcher, and a socket that does not exist."""
    for env in (_env("/nonexistent/agent.sock", **NO_AGENT_ENV), _env("/nonexistent/agent.sock")):
        proc = _run(os.path.join(plugin_bin, "netkit-ipam"), {**env, "CNI_COMMAND": "STATUS"})
        out, err = proc.communicate(_status_conf(str(tmp_path)), timeout=60)
        assert (proc.returncode, out) == (0, b""), (out, err)


@pytest.mark.parametrize("stdin", [b'{"cniVersion":"0.4.0"}', b' \n{ "cniVersion" :\t"1.1.0" }\n',
                                   b'{"cniVersion":"9.9.9"}', b'{"cniVersion":"caf\xc3\xa9"}',
                                   b'{"cniVersion":"0.3.1","name":"x"}', b'{"cniVersion":"0.\\u0034.0"}', b"",
                                   b"not json", b'{"cniVersion": 1}'],
                         ids=["plain", "spaces", "unknown", "non-ascii", "more-keys", "escape", "empty", "garbage",
                              "number"])
def test_version_is_the_handlers_answer_and_the_plain_form_needs_no_interpreter(tmp_path: Path,
                                                                                stdin: bytes) -> None:
    """Byte for byte cni/handler's answer, with the agent off; the plain form libcni sends is answered
    with the Python launcher gone (so by the C launcher alone), anything else by the Python launcher."""
    from netkit.cni import handler

    report = install.install(bin_dir=str(tmp_path / "bin"), conf_dir=str(tmp_path / "conf"))
    assert not report.notes or "compiler" not in " ".join(report.notes), report.notes
    exe = str(tmp_path / "bin" / "netkit-bridge")
    expected, code = handler.handle(plugins.get("netkit-bridge"), {"CNI_COMMAND": "VERSION"}, stdin)
    env = _env("/nonexistent/agent.sock", **NO_AGENT_ENV)
    proc = _run(exe, env)
    assert proc.communicate(stdin, timeout=60)[0] == expected and proc.returncode == code
    plain = handler.asked_version(stdin) is not None
    os.unlink(native.fallback_path(exe))
    proc = _run(exe, env)
    out, err = proc.communicate(stdin, timeout=60)
    assert (proc.returncode == code and out == expected) if plain else (proc.returncode != 0 and b"cannot run" in err)


def test_without_an_agent_or_its_python_launcher_the_answer_is_a_cni_error_to_retry(tmp_path: Path) -> None:
    """As on a Kubernetes node while the DaemonSet's agent restarts (the launchers were built in the
    netkit image; the Python launcher behind them is not on the host): valid CNI error JSON, code 11
    (try again later), the missing path in the details, a non-zero exit, no traceback."""
    report = install.install(bin_dir=str(tmp_path / "bin"), conf_dir=str(tmp_path / "conf"))
    assert not report.notes or "compiler" not in " ".join(report.notes), report.notes
    exe = str(tmp_path / "bin" / "netkit-bridge")
    os.unlink(native.fallback_path(exe))
    proc = _run(exe, _env(str(tmp_path / "no-agent.sock"), CNI_COMMAND="ADD", CNI_CONTAINERID="c1",
                          CNI_NETNS="/proc/self/ns/net", CNI_IFNAME="eth0", CNI_PATH=str(tmp_path / "bin")))
    out, err = proc.communicate(_status_conf(str(tmp_path)), timeout=60)
    answer = json.loads(out)
    assert proc.returncode == 1 and answer["code"] == 11, (out, err)
    assert answer["details"].startswith(f"{native.fallback_path(exe)}: No such file or directory"), answer
    assert "cannot run" in answer["msg"] and b"Traceback" not in err
