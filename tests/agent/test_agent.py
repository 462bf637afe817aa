"""The warm agent's own guarantees (the plugin suite runs through it too: see the `box` fixture)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from harness.agent import Agent
from netkit.agent import client, protocol
from tests.sandbox import AS_NOBODY

CONF = json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "netkit-ipam"}).encode()


def test_socket_is_root_only(agent: str) -> None:
    mode = os.stat(agent).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


def test_non_root_peer_is_refused_even_with_an_open_socket() -> None:
    # An agent of its own in a directory others may enter (pytest's tmp_path is root-only), its
    # socket opened to everyone: the peer-credential check must still refuse.
    with tempfile.TemporaryDirectory(prefix="nkt-agent-") as tmp:
        os.chmod(tmp, 0o755)
        _refused_as_nobody(os.path.join(tmp, "open.sock"))


def _refused_as_nobody(agent: str) -> None:
    proc = Agent(agent).start()
    try:
        os.chmod(agent, 0o666)
        # The client returns None for anything that keeps it from the agent (and then runs in-process):
        # a refusal is an answer, so None is tried again and, if it stays, explained (seen twice in
        # loaded CI emulations, never alone: the last try says what the client met).
        code = (f"import os, socket, sys; sys.path.insert(0, {os.getcwd()!r}); from netkit.agent import client; "
                f"got = client.forward('netkit-ipam', {{'CNI_COMMAND': 'VERSION', 'NETKIT_AGENT_SOCKET': {agent!r}}}, b''); "
                f"print(got)\n"
                f"if got is None:\n"
                f"    s = socket.socket(socket.AF_UNIX)\n"
                f"    try: s.connect({agent!r}); print('connect ok')\n"
                f"    except OSError as e: print('connect', e)\n"
                f"    print('exists', os.path.exists({agent!r}), 'ns', os.access('/proc/thread-self/ns/net', os.R_OK))")
        for _ in range(3):
            peer = subprocess.run([*AS_NOBODY, sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
            if not peer.stdout.startswith("None"):
                break
            time.sleep(1)
    finally:
        proc.stop()
    assert peer.returncode == 0, peer.stderr
    assert "serves root only" in peer.stdout and ", 1)" in peer.stdout


def test_other_version_is_not_served_and_told_so(agent: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(agent)
        header = json.dumps({"version": "0.0.0-other", "plugin": "netkit-ipam", "env": {"CNI_COMMAND": "VERSION"}})
        fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            protocol.send_request(sock, header.encode(), b"", fd)
        finally:
            os.close(fd)
        assert protocol.recv_reply(sock) == (protocol.OTHER_VERSION, b"")  # the launcher has it replaced


def test_agent_answers_like_the_handler(agent: str) -> None:
    env = {"CNI_COMMAND": "VERSION", protocol.ENV_SOCKET: agent}
    out, code = client.forward("netkit-ipam", env, CONF) or (b"", -99)
    assert code == 0 and json.loads(out)["supportedVersions"][-1] == "1.1.0"
    bad = client.forward("netkit-ipam", dict(env, CNI_COMMAND="ADD"), b"{not json")
    assert bad is not None and bad[1] == 1 and json.loads(bad[0])["code"] == 4


@pytest.mark.parametrize("confine", [["--no-new-privs"], ["--inh-caps=-all", "--bounding-set=-net_admin"]],
                         ids=["no-new-privs", "fewer-capabilities"])
def test_a_root_with_fewer_privileges_than_the_agent_is_left_to_run_it_itself(agent: str, confine: list[str]) -> None:
    # uid 0 alone is not enough: served, a confined root would have the agent do with full privileges
    # what it may not do itself.  In-process (None here) it runs with its own.
    code = (f"import json, sys; from netkit.agent import client, protocol; "
            f"print(client.forward('netkit-ipam', {{'CNI_COMMAND': 'VERSION', protocol.ENV_SOCKET: {agent!r}}}, "
            f"{CONF!r}) is None)")
    confined = subprocess.run(["setpriv", *confine, sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60)
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (confined.stdout.strip(), plain.stdout.strip()) == ("True", "False"), (confined.stderr, plain.stderr)


def test_absent_or_stale_socket_means_in_process(tmp_path: Path) -> None:
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(stale))  # bound, never listening: what a crashed agent leaves
    for path in (str(tmp_path / "absent.sock"), str(stale)):
        assert client.forward("netkit-ipam", {"CNI_COMMAND": "VERSION", protocol.ENV_SOCKET: path}, CONF) is None


def test_a_namespace_bound_where_the_agent_cannot_see_it_is_left_to_the_launcher(agent: str, tmp_path: Path) -> None:
    # The caller binds a namespace inside a private mount namespace of its own (what `ip netns exec`
    # gives every command): at that path the agent would open a plain empty file.  Not served, the
    # launcher runs the request itself; a path both see alike (the control) is served.
    path = str(tmp_path / "ns")
    code = "\n".join([
        "from netkit.agent import client",
        "from netkit.net import netns",
        f"netns.create({path!r})",
        f"env = {{'CNI_COMMAND': 'VERSION', 'NETKIT_AGENT_SOCKET': {agent!r}}}",
        f"for where in ({path!r}, '/proc/self/ns/net'):",
        f"    print(client.forward('netkit-ipam', dict(env, CNI_NETNS=where), {CONF!r}) is not None)",
    ])
    proc = subprocess.run(["unshare", "--mount", "--propagation", "slave", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True"]
