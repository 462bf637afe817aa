"""State files, leases and their directories are never writable by other users, whatever the umask.

Plugins and the runtime are started with umask 000, the worst a service manager could hand them:
every mode must then come from netkit itself.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

from netkit import fileio
from tests.runtime.conftest import Runtime
from tests.sandbox import Sandbox, bridge_conf


def _writable_by_others(top: str) -> list[str]:
    """Paths under ``top`` (itself included) that group or others may write, with their modes."""
    out = []
    for d, dirs, files in os.walk(top):
        for path in [d] + [os.path.join(d, f) for f in files]:
            mode = os.lstat(path).st_mode
            if not stat.S_ISLNK(mode) and mode & 0o022:
                out.append(f"{path} {stat.filemode(mode)}")
    return out


def _paths(top: str) -> list[str]:
    return [os.path.join(d, f) for d, _, files in os.walk(top) for f in files]


def test_leases_are_not_writable_by_others_after_a_real_add_with_umask_0(inproc: Sandbox) -> None:
    c = inproc.container()
    conf = bridge_conf(inproc)
    proc = subprocess.run(["ip", "netns", "exec", inproc.host.name, os.path.join(inproc.bin_dir, "netkit-bridge")],
                          input=json.dumps(conf).encode(), env=inproc.env("ADD", c), capture_output=True, timeout=60,
                          umask=0)
    assert proc.returncode == 0, proc.stdout
    leases = os.path.join(inproc.data_dir, "testnet")
    assert os.path.exists(os.path.join(leases, "10.20.0.2")) and os.path.exists(os.path.join(leases, "lock"))
    assert _writable_by_others(inproc.data_dir) == []
    assert stat.S_IMODE(os.stat(os.path.join(leases, "10.20.0.2")).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(os.path.join(leases, "lock")).st_mode) == 0o600


def test_runtime_state_is_not_writable_by_others_after_run_with_umask_0(inproc: Sandbox, tmp_path: Path) -> None:
    rt = Runtime(inproc, str(tmp_path / "root"))
    try:
        proc = subprocess.run(rt.argv("run", "-d", "--name", "web", "-p", "8080:80", "--", "sleep", "300"),
                              capture_output=True, text=True, timeout=60, env=rt.env, umask=0)
        assert proc.returncode == 0, proc.stderr
        cid = proc.stdout.strip().splitlines()[-1]
        record = os.path.join(rt.root, "containers", cid, "config.json")
        assert json.loads(Path(record).read_text())["name"] == "web"
        files = _paths(rt.root)
        assert len(files) > 5 and any("/ipam/" in f for f in files), files  # leases are under the root too
        assert _writable_by_others(rt.root) == []
        assert stat.S_IMODE(os.stat(record).st_mode) == 0o600
    finally:
        rt.cleanup()


def test_atomic_writes_never_inherit_a_stale_temp_files_mode(tmp_path: Path) -> None:
    # A crashed writer of the same pid and thread left its temp file, world-writable.
    target = str(tmp_path / "state")
    import threading

    stale = f"{target}.tmp.{os.getpid()}.{threading.get_native_id()}"
    Path(stale).write_text("half")
    os.chmod(stale, 0o666)
    old = os.umask(0)
    try:
        fileio.write_atomic(target, b"{}", mode=0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert Path(target).read_bytes() == b"{}" and not os.path.exists(stale)
