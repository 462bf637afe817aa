"""The plugin executables: what they import per command (start-up cost is per container)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from harness.bench import NO_AGENT

from netkit.launch import native


def _imports(exe: str, env: dict[str, str], stdin: bytes) -> tuple[set[str], subprocess.CompletedProcess[bytes]]:
    # Asks for an agent where none can be (nor be started: no such directory), as a launcher's first call does.
    env = {**env, "NETKIT_AGENT_SOCKET": NO_AGENT}
    if native.read_binary(exe) is not None:
        exe = native.fallback_path(exe)  # a C launcher: what it execs is the Python launcher measured here
    proc = subprocess.run([sys.executable, "-IS", "-X", "importtime", exe], env=env, input=stdin,
                          capture_output=True, timeout=30)
    mods = {line.split("|")[-1].strip() for line in proc.stderr.decode().splitlines()
            if line.startswith("import time:")}
    return mods, proc


def test_version_imports_neither_netlink_nor_the_plugin(plugin_bin: str) -> None:
    mods, proc = _imports(os.path.join(plugin_bin, "netkit-bridge"), {"CNI_COMMAND": "VERSION"},
                          b'{"cniVersion":"1.0.0"}')
    assert proc.returncode == 0 and json.loads(proc.stdout)["cniVersion"] == "1.0.0"
    assert "netkit.cni.handler" in mods
    assert not {m for m in mods if m.startswith(("pyroute2", "netkit.plugins.", "netkit.net", "iptc", "click"))}


def test_ipam_add_does_not_import_netlink(plugin_bin: str, tmp_path: Path) -> None:
    conf = {"cniVersion": "1.0.0", "name": "n", "type": "netkit-ipam",
            "ipam": {"type": "netkit-ipam", "ranges": [[{"subnet": "10.3.0.0/24"}]], "dataDir": str(tmp_path)}}
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/nonexistent", "CNI_IFNAME": "eth0",
           "CNI_PATH": plugin_bin}
    mods, proc = _imports(os.path.join(plugin_bin, "netkit-ipam"), env, json.dumps(conf).encode())
    assert proc.returncode == 0, proc.stdout
    assert "netkit.ipam.allocator" in mods  # importlib.import_module itself is not timed
    assert not {m for m in mods if m.startswith(("pyroute2", "dataclasses", "iptc", "click", "netaddr"))}
