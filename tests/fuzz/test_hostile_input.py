"""Explicit hostile and broken input: huge, deep, undecodable, malicious names and paths, broken disks.

Each case gets the spec's error object (or a result), the documented code, and leaves nothing: no
veth, no lease, no rule, and any existing link it names untouched.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from netkit import errors
from tests import seeds
from tests.fuzz import cni
from tests.sandbox import Namespace, Sandbox, bridge_conf

PRIVATE_MOUNT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "private_mount.py")
MB = 1024 * 1024
# How long a plugin facing a FIFO may take before the test gives up on it.  Not a speed bound: no
# writer ever opens the FIFO while the plugin runs, so a plugin that blocked on it would never
# answer; any answer at all proves it did not block.
FIFO_HANG_GUARD = 120


def _run(box: Sandbox, plugin: str, env: dict[Any, Any], stdin: bytes, timeout: float = 60) -> tuple[int, Any]:
    """Exec a plugin in the sandbox host; (exit status, parsed answer), checked against the spec."""
    proc = subprocess.run(["ip", "netns", "exec", box.host.name, os.path.join(box.bin_dir, plugin)], input=stdin,
                          env=env, capture_output=True, timeout=timeout)
    assert b"Traceback" not in proc.stderr, proc.stderr.decode(errors="replace")
    command = env.get("CNI_COMMAND") or env.get(b"CNI_COMMAND", b"").decode()
    return proc.returncode, cni.assert_cni_answer(proc.stdout, proc.returncode, command)


def _refused(box: Sandbox, c: Namespace, env: dict[Any, Any], stdin: bytes, code: int,
             bridge_ok: bool = False) -> dict[str, Any]:
    """Exec netkit-bridge ADD: error ``code`` and nothing made (the bridge only when ``bridge_ok``:
    a refusal that comes from IPAM, after the bridge exists)."""
    before = cni.snapshot(box, c)
    rc, body = _run(box, "netkit-bridge", env, stdin)
    assert rc == 1 and body["code"] == code, body
    cni.assert_nothing_created(before, cni.snapshot(box, c), {"bridge": "nkbr0"} if bridge_ok else None)
    return body


# Size and depth ----------------------------------------------------------------------------------

def test_eight_megabytes_of_garbage_on_stdin_is_code_6(box: Sandbox) -> None:
    c = box.container()
    _refused(box, c, box.env("ADD", c), bytes(range(256)) * (8 * MB // 256), errors.DECODE_FAILURE)


def test_eight_megabytes_of_open_brackets_is_code_6(box: Sandbox) -> None:
    c = box.container()
    _refused(box, c, box.env("ADD", c), b"[" * (8 * MB), errors.DECODE_FAILURE)


def test_a_config_padded_to_eight_megabytes_is_served_and_deleted(box: Sandbox) -> None:
    # Unknown keys are ignored, as the reference plugins do: size alone is no reason to refuse.
    c = box.container()
    stdin = json.dumps(bridge_conf(box, padding="x" * (8 * MB))).encode()
    rc, out = _run(box, "netkit-bridge", box.env("ADD", c), stdin)
    assert rc == 0 and out["ips"][0]["address"] == "10.20.0.2/24"
    assert _run(box, "netkit-bridge", box.env("DEL", c), stdin) == (0, None)
    assert box.leases("testnet") == [] and c.links() == ["lo"]


@pytest.mark.parametrize("where", ["top", "dns", "args", "prevResult"])
def test_deeply_nested_json_is_code_6_before_anything_is_made(box: Sandbox, where: str) -> None:
    # 500 levels decode fine but would overflow the result encoder after ADD made the veth.
    c = box.container()
    deep: Any = "x"
    for _ in range(500):
        deep = [deep]
    if where == "top":
        stdin = b"[" * 100000 + b"]" * 100000
    else:
        conf = bridge_conf(box)
        conf[where] = {"nameservers": [], "options": deep} if where != "prevResult" else {"ips": [], "x": deep}
        stdin = json.dumps(conf).encode()
    body = _refused(box, c, box.env("ADD", c), stdin, errors.DECODE_FAILURE)
    assert "nested" in body.get("details", "") or where == "top"


def test_nesting_at_the_limit_is_accepted() -> None:
    from netkit.cni import request

    conf: dict[str, Any] = {"cniVersion": "1.0.0", "name": "n"}
    inner: Any = {}
    conf["args"] = inner
    for _ in range(request.MAX_DEPTH - 2):
        inner["a"] = {}
        inner = inner["a"]
    assert request.decode_config(json.dumps(conf).encode())["name"] == "n"
    inner["a"] = {}
    with pytest.raises(errors.CNIError) as info:
        request.decode_config(json.dumps(conf).encode())
    assert info.value.code == errors.DECODE_FAILURE


# Undecodable bytes -------------------------------------------------------------------------------

def test_non_utf8_config_is_code_6(box: Sandbox) -> None:
    c = box.container()
    stdin = json.dumps(bridge_conf(box)).encode().replace(b'"testnet"', b'"test\xffnet"')
    _refused(box, c, box.env("ADD", c), stdin, errors.DECODE_FAILURE)


@pytest.mark.parametrize("var, value, code", [
    ("CNI_IFNAME", b"eth\xff", errors.INVALID_ENV),
    ("CNI_CONTAINERID", b"c\xff1", errors.INVALID_ENV),
    ("CNI_ARGS", b"IP=10.20.0.\xff", errors.INVALID_CONFIG),
    ("CNI_ARGS", b"MAC=02:00:00:00:00:\xff", errors.INVALID_CONFIG),
    ("CNI_NETNS", b"/run/netns/\xff\xfe", errors.UNKNOWN_CONTAINER),
])
def test_non_utf8_environment_is_refused_with_its_code(box: Sandbox, var: str, value: bytes, code: int) -> None:
    c = box.container()
    env = {k.encode(): v.encode() for k, v in box.env("ADD", c).items()}
    env[var.encode()] = value
    _refused(box, c, env, json.dumps(bridge_conf(box)).encode(), code, bridge_ok=var == "CNI_ARGS")


# Interface names ---------------------------------------------------------------------------------

BAD_IFNAMES = ["eth/0", "/", "..", ".", "a b", " ", "eth0\t", "eth:0", "a" * 16, "é" * 8, "../../etc",
               "eth0\x7f"]


# Names are checked before any plugin code runs, the same way with or without the agent: in-process
# executables only, to keep the run short.

@pytest.mark.parametrize("ifname", BAD_IFNAMES + [""])
def test_bad_container_interface_name_is_code_4(host: Sandbox, ifname: str) -> None:
    c = host.container()
    _refused(host, c, host.env("ADD", c, ifname=ifname), json.dumps(bridge_conf(host)).encode(), errors.INVALID_ENV)


@pytest.mark.parametrize("bridge", BAD_IFNAMES + ["eth0\x00x"])
def test_bad_bridge_name_is_code_7(host: Sandbox, bridge: str) -> None:
    c = host.container()
    _refused(host, c, host.env("ADD", c), json.dumps(bridge_conf(host, bridge=bridge)).encode(),
             errors.INVALID_CONFIG)


def _release_readers(fifo: str) -> None:
    """Open and close the writing end until no reader waits on ``fifo`` any more (a plugin may open
    it again right after: the lease store reads every lease twice), so nothing stays blocked."""
    misses = 0
    deadline = time.monotonic() + 10
    while misses < 5 and time.monotonic() < deadline:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            misses = 0
        except OSError:  # ENXIO: nobody is waiting
            misses += 1
        time.sleep(0.1)


def _exec_beside_a_fifo(box: Sandbox, plugin: str, env: dict[str, str], stdin: bytes) -> tuple[int, bytes]:
    """Exec a plugin in its own process group while nobody writes to the test's FIFO; a plugin that
    has not answered by ``FIFO_HANG_GUARD`` is blocked on it: the whole group (delegated IPAM too) dies
    and the test fails saying so."""
    proc = subprocess.Popen(["ip", "netns", "exec", box.host.name, os.path.join(box.bin_dir, plugin)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(stdin, timeout=FIFO_HANG_GUARD)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{plugin} never answered: it blocked opening the FIFO (no writer ever came)")
    return proc.returncode, out


def _link(ns: Namespace, name: str) -> dict[str, Any]:
    out = json.loads(ns.run("ip", "-j", "-d", "addr", "show", "dev", name).stdout)[0]
    for volatile in ("operstate", "linkinfo_stats", "stats64"):
        out.pop(volatile, None)
    return out


@pytest.mark.parametrize("name", ["eth0", "lo"])
def test_bridge_name_of_an_existing_non_bridge_link_is_refused_and_the_link_untouched(box: Sandbox,
                                                                                      name: str) -> None:
    c = box.container()
    if name == "eth0":
        # A dummy NIC where the kernel has the module, else a veth whose peer is in another namespace.
        if box.host.run("ip", "link", "add", "eth0", "type", "dummy").returncode != 0:
            box.host.run("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "wire0", "netns",
                         box.container().name, check=True)
        box.host.run("ip", "addr", "add", "10.99.0.1/24", "dev", "eth0", check=True)
        box.host.run("ip", "link", "set", "eth0", "up", check=True)
    before = _link(box.host, name)
    for conf in (bridge_conf(box, bridge=name), bridge_conf(box, bridge=name, forceAddress=True, mtu=1280)):
        rc, body = _run(box, "netkit-bridge", box.env("ADD", c), json.dumps(conf).encode())
        assert rc == 1 and body["code"] == errors.NAME_CONFLICT and "not a bridge" in body["msg"], body
    after = _link(box.host, name)
    assert after == before  # same kind, flags, MTU, addresses; no master
    assert "master" not in after
    assert box.leases("testnet") == [] and c.links() == ["lo"]
    assert not [n for n in box.host.links() if n.startswith("nk")]
    assert box.group_chains() == []


# CNI_NETNS ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["file", "directory", "own-namespace", "thread-self", "empty"])
def test_netns_that_is_not_a_container_namespace_is_refused(box: Sandbox, tmp_path: Path, kind: str) -> None:
    c = box.container()
    path = {"file": str(tmp_path / "netns-file"), "directory": str(tmp_path), "own-namespace": "/proc/self/ns/net",
            "thread-self": "/proc/thread-self/ns/net", "empty": ""}[kind]
    (tmp_path / "netns-file").write_bytes(b"not a namespace")
    env = box.env("ADD", c, netns=path)
    if not path:
        env.pop("CNI_NETNS")
    _refused(box, c, env, json.dumps(bridge_conf(box)).encode(), errors.INVALID_ENV)


def test_netns_that_is_a_fifo_is_refused_without_blocking(box: Sandbox, tmp_path: Path) -> None:
    c = box.container()
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    try:
        rc, out = _exec_beside_a_fifo(box, "netkit-bridge", box.env("ADD", c, netns=fifo),
                                      json.dumps(bridge_conf(box)).encode())
        assert rc == 1 and json.loads(out)["code"] == errors.INVALID_ENV
    finally:
        _release_readers(fifo)
    assert box.leases("testnet") == [] and c.links() == ["lo"]


def test_pid_1_namespace_is_refused_when_the_plugin_runs_elsewhere(host: Sandbox) -> None:
    # The real /proc/1/ns/net is the machine's: never handed to a plugin here.  A new PID namespace
    # makes a stand-in: its PID 1 sits in a sandbox "machine" namespace, the plugin runs in the
    # sandbox host, and CNI_NETNS=/proc/1/ns/net names the stand-in machine.
    machine = host.container()
    before = machine.links()
    c = host.container()
    env = host.env("ADD", c, netns="/proc/1/ns/net")
    argv = ["ip", "netns", "exec", host.host.name, os.path.join(host.bin_dir, "netkit-bridge")]
    code = (f"import json, subprocess, sys\n"
            f"p = subprocess.run({argv!r}, input=sys.stdin.buffer.read(), env={env!r}, capture_output=True)\n"
            f"print(json.dumps([p.returncode, p.stdout.decode()]))\n")
    proc = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "ip", "netns", "exec", machine.name,
                           sys.executable, "-c", code], input=json.dumps(bridge_conf(host)).encode(),
                          capture_output=True, timeout=60)
    rc, out = json.loads(proc.stdout)
    try:
        assert machine.links() == before, "the plugin configured the stand-in machine's namespace"
        assert rc == 1 and json.loads(out)["code"] == errors.INVALID_ENV
    finally:
        if rc == 0:
            host.call("netkit-bridge", "DEL", bridge_conf(host), container_id=c.name, netns="")


# IPAM's lease directory --------------------------------------------------------------------------

def test_data_dir_under_a_regular_file_is_code_5_and_nothing_is_made(box: Sandbox, tmp_path: Path) -> None:
    c = box.container()
    (tmp_path / "file").write_text("x")
    conf = bridge_conf(box)
    conf["ipam"]["dataDir"] = str(tmp_path / "file" / "leases")
    before = cni.snapshot(box, c)
    rc, body = _run(box, "netkit-bridge", box.env("ADD", c), json.dumps(conf).encode())
    assert rc == 1 and body["code"] == errors.IO_FAILURE, body
    cni.assert_nothing_created(before, cni.snapshot(box, c), conf)
    assert (tmp_path / "file").read_text() == "x"


def _in_private_mount(spec: dict[str, Any]) -> list[dict[str, Any]]:
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, PRIVATE_MOUNT,
                           json.dumps(spec)], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return json.loads(proc.stdout)


def _step(host: Sandbox, plugin: str, command: str, c: Namespace, conf: dict[str, Any]) -> dict[str, Any]:
    env = dict(host.env(command, c), NETKIT_BOOT_ID="fuzz-boot")
    return {"argv": ["ip", "netns", "exec", host.host.name, os.path.join(host.bin_dir, plugin)], "env": env,
            "stdin": json.dumps(conf)}


def _leases_and_temps(files: dict[str, int]) -> list[str]:
    """Leases, owner hints and temp files of atomic writes among ``files``."""
    return sorted(f for f in files if os.path.basename(f)[0].isdigit() or ".tmp." in f
                  or os.path.basename(f).startswith("owner."))


@pytest.mark.parametrize("plugin", ["netkit-ipam", "netkit-bridge"])
def test_read_only_data_dir_is_code_5_and_nothing_is_made(host: Sandbox, tmp_path: Path, plugin: str) -> None:
    # A private mount namespace, so the plugins run in-process (the agent could not see the mount).
    c = host.container()
    mount = str(tmp_path / "ro")
    conf = bridge_conf(host, type=plugin)
    conf["ipam"]["dataDir"] = mount
    results = _in_private_mount({"mount": mount, "state": "ro", "prepare": [os.path.join(mount, "testnet")],
                                 "steps": [_step(host, plugin, "ADD", c, conf)]})
    answer = json.loads(results[0]["stdout"])
    assert results[0]["rc"] == 1 and answer["code"] == errors.IO_FAILURE, results
    assert results[0]["files"] == {}
    assert c.links() == ["lo"] and not [n for n in host.host.links() if n.startswith("nk") and n != "nkbr0"]


@pytest.mark.parametrize("plugin", ["netkit-ipam", "netkit-bridge"])
def test_full_disk_is_code_5_with_nothing_half_written_then_add_recovers(host: Sandbox, tmp_path: Path,
                                                                        plugin: str) -> None:
    c = host.container()
    mount = str(tmp_path / "full")
    conf = bridge_conf(host, type=plugin)
    conf["ipam"]["dataDir"] = mount
    net_dir = os.path.join(mount, "testnet")
    # The boot marker already says this boot, so the first writes ADD tries are the attachment's
    # owner hint and its lease.
    spec = {"mount": mount, "state": "full", "size": "64k", "prepare": [net_dir],
            "files": {os.path.join(net_dir, ".netkit-boot-id"): "fuzz-boot"},
            "steps": [_step(host, plugin, "ADD", c, conf), {"free": True}, _step(host, plugin, "ADD", c, conf),
                      _step(host, plugin, "DEL", c, conf)]}
    full, _, again, deleted = _in_private_mount(spec)
    answer = json.loads(full["stdout"])
    assert full["rc"] == 1 and answer["code"] == errors.IO_FAILURE, full
    assert "No space left" in answer["details"] and answer["msg"].startswith(f"failed to write {net_dir}/"), answer
    assert _leases_and_temps(full["files"]) == [], full["files"]
    assert c.links() == ["lo"] or plugin == "netkit-ipam"
    assert again["rc"] == 0, again
    assert [f for f in _leases_and_temps(again["files"]) if "/owner." not in f] == ["testnet/10.20.0.2"]
    assert len(_leases_and_temps(again["files"])) == 2  # and its owner hint
    assert deleted["rc"] == 0 and _leases_and_temps(deleted["files"]) == [], deleted
    assert c.links() == ["lo"]


# Corrupt leases ----------------------------------------------------------------------------------

def test_odd_lease_files_neither_crash_add_nor_are_handed_out(box: Sandbox) -> None:
    garbage = seeds.trial("garbage lease").rng.randbytes(5 * MB)
    c = box.container()
    net = os.path.join(box.data_dir, "testnet")
    os.makedirs(os.path.join(net, "10.20.0.2"))                              # a directory
    Path(net, "10.20.0.3").write_bytes(b"")                                  # empty
    Path(net, "10.20.0.4").write_bytes(garbage)                               # huge garbage
    os.symlink("/dev/zero", os.path.join(net, "10.20.0.5"))                 # endless
    Path(net, "10.20.0.6").write_bytes(b'{"containerID": 5, "ifname": []}')  # wrong types
    Path(net, "last_reserved_ip.0").write_bytes(b"\xff\xfe")
    Path(net, ".netkit-boot-id").write_bytes(b"\x00" * 100)
    rc, out = box.call("netkit-bridge", "ADD", bridge_conf(box), c)
    assert rc == 0, out
    assert out["ips"][0]["address"] == "10.20.0.7/24"
    assert box.call("netkit-bridge", "DEL", bridge_conf(box), c) == (0, None)
    assert os.path.islink(os.path.join(net, "10.20.0.5"))  # not followed, not released by another's DEL


def test_a_fifo_among_the_leases_does_not_block_add(host: Sandbox) -> None:
    c = host.container()
    net = os.path.join(host.data_dir, "testnet")
    os.makedirs(net)
    fifo = os.path.join(net, "10.20.0.2")
    os.mkfifo(fifo)
    try:
        rc, raw = _exec_beside_a_fifo(host, "netkit-bridge", host.env("ADD", c),
                                      json.dumps(bridge_conf(host)).encode())
        assert rc == 0 and json.loads(raw)["ips"][0]["address"] == "10.20.0.3/24"
        assert host.call("netkit-bridge", "DEL", bridge_conf(host), c) == (0, None)
    finally:
        _release_readers(fifo)


def test_lease_files_are_regular_files_after_add(box: Sandbox) -> None:
    c = box.container()
    assert box.call("netkit-bridge", "ADD", bridge_conf(box), c)[0] == 0
    lease = os.path.join(box.data_dir, "testnet", "10.20.0.2")
    assert stat.S_ISREG(os.lstat(lease).st_mode)
    assert json.loads(Path(lease).read_text())["containerID"] == c.name


def test_add_whose_result_cannot_be_encoded_is_taken_back(host: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever makes the answer unwritable after the attachment exists (a bug, a value the encoder
    # chokes on), the runtime sees a failed ADD, so nothing may stay.
    from netkit.cni import result

    def broken(*_: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(result, "encode", broken)
    c = host.container()
    before = cni.snapshot(host, c)
    rc, body = host.handle("netkit-bridge", "ADD", bridge_conf(host, ipMasq=True), c)
    assert rc == 1 and body["code"] == errors.INTERNAL and "RecursionError" in body["details"]
    cni.assert_nothing_created(before, cni.snapshot(host, c), {"bridge": "nkbr0"})
