"""The choosing executor: this installation's own launchers answered without an exec, anything else exec'd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from netkit.cni import delegate
from netkit.cni import executor as executors
from netkit.launch import invoker, native

_execs: list[str] = []
sys.addaudithook(lambda event, args: _execs.append(str(args[0])) if event == "subprocess.Popen" else None)


def _env() -> dict[str, str]:
    return {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0",
            "NETKIT_AGENT_SOCKET": "/nonexistent/agent.sock"}


def _ipam_conf(tmp_path: Path) -> bytes:
    conf: dict[str, Any] = {"cniVersion": "1.0.0", "name": "net", "type": "netkit-bridge",
                            "ipam": {"type": "netkit-ipam", "ranges": [[{"subnet": "10.7.0.0/24"}]],
                                     "dataDir": str(tmp_path / "leases")}}
    return json.dumps(conf).encode()


def test_own_launcher_is_answered_without_exec_and_a_foreign_copy_is_execd(plugin_bin: str, tmp_path: Path) -> None:
    """This installation's netkit-ipam answers in-process (no interpreter start); a launcher that is
    not byte-for-byte ours (another install, an edited file) is exec'd like any plugin."""
    own = os.path.join(plugin_bin, "netkit-ipam")
    chooser = invoker.Invoker()
    _execs.clear()
    first = delegate.invoke("netkit-ipam", "ADD", _env(), _ipam_conf(tmp_path), [plugin_bin], chooser)
    assert first is not None and _execs == []
    foreign_dir = tmp_path / "foreign"
    foreign_dir.mkdir()
    foreign = foreign_dir / "netkit-ipam"
    foreign.write_bytes(Path(own).read_bytes() + b"# edited\n")  # a C launcher (here) or a Python one
    foreign.chmod(0o755)
    assert invoker.is_own_launcher(own) and not invoker.is_own_launcher(str(foreign))
    second = delegate.invoke("netkit-ipam", "ADD", dict(_env(), CNI_CONTAINERID="c2"), _ipam_conf(tmp_path),
                             [str(foreign_dir)], chooser)
    assert _execs == [str(foreign)]
    assert second is not None and second["ips"][0]["address"] != first["ips"][0]["address"]


def test_without_the_chooser_our_own_launcher_is_execd_like_any_plugin(plugin_bin: str, tmp_path: Path) -> None:
    """cni knows no launcher: its raw executor execs ours too (the same answer, an interpreter dearer)."""
    _execs.clear()
    res = delegate.invoke("netkit-ipam", "ADD", _env(), _ipam_conf(tmp_path), [plugin_bin], executors.RawExec())
    assert res is not None and _execs == [os.path.join(plugin_bin, "netkit-ipam")]


def test_use_installs_the_chooser_once() -> None:
    previous = executors.use(executors.RawExec())
    try:
        invoker.use()
        chosen = executors.current()
        invoker.use()
        assert isinstance(chosen, invoker.Invoker) and executors.current() is chosen
    finally:
        executors.use(previous)


def test_a_launcher_knows_its_own_launchers(plugin_bin: str) -> None:
    """Inside a launcher (-IS: no site, so a venv's interpreter keeps the base prefix) the launchers of
    the installation are still its own: an in-process bridge ADD answers its IPAM delegate without an exec."""
    own = os.path.join(plugin_bin, "netkit-ipam")
    text = native.fallback_path(own) if native.read_binary(own) is not None else own  # behind a C launcher
    with open(text, encoding="utf-8") as f:
        paths_line = next(line for line in f if line.startswith("sys.path[:0] = "))
    code = f"import sys\n{paths_line}from netkit.launch import invoker\nprint(invoker.is_own_launcher({own!r}))\n"
    proc = subprocess.run([sys.executable, "-IS", "-c", code], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout.strip()) == (0, "True"), proc.stderr
