"""Corrupt runtime state: a damaged container record is skipped and reported, never a crash loop."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from netkit.runtime import state
from netkit.runtime.root import Root
from tests.runtime.conftest import Runtime
from tests.sandbox import Sandbox

CORRUPT: dict[str, bytes] = {
    "garbage": b"{not json",
    "empty": b"",
    "non-utf8": b'{"id": "\xff\xfe"}',
    "list": b"[]",
    "number": b"42",
    "wrong-types": b'{"id": 5, "name": ["x"], "state": null}',
    "deep": b"[" * 100000,
}


def _good_record(cid: str) -> dict:
    return {"id": cid, "name": "n", "command": ["true"], "env": {}, "cwd": "/", "hostname": "h", "network": "bridge",
            "net_kind": "bridge", "netns": "", "state": "exited", "created": 1.0, "pid": 0, "auto_remove": False,
            "log": "/nonexistent", "dns": [], "ports": []}


def _plant(root: str) -> list[str]:
    """One corrupt record per kind, plus a directory where config.json should be; their IDs."""
    ids = []
    for i, body in enumerate(CORRUPT.values()):
        cid = f"{i:02d}" + "f" * 62
        os.makedirs(os.path.join(root, "containers", cid))
        Path(root, "containers", cid, "config.json").write_bytes(body)
        ids.append(cid)
    cid = "e" * 64
    os.makedirs(os.path.join(root, "containers", cid, "config.json"))
    return ids + [cid]


def test_corrupt_records_are_skipped_and_the_runtime_keeps_working(host: Sandbox, tmp_path: Path) -> None:
    rt = Runtime(host, str(tmp_path / "root"))
    try:
        rt("run", "-d", "--name", "good", "--", "sleep", "300")
        corrupt = _plant(rt.root)
        for _ in range(2):  # the same answers every time: no crash loop
            listing = rt("ps", "-a").stdout
            assert "good" in listing and len(listing.strip().splitlines()) == 2, listing
        assert rt("inspect", "good").returncode == 0
        rt("run", "--rm", "--name", "other", "--", "true")
        rt("rm", "-f", "good")
        rt("system", "prune")
        assert rt("ps", "-a").stdout.strip().splitlines()[1:] == []
        proc = rt("rm", "-f", corrupt[0], check=False)  # a corrupt one named: a readable error
        assert proc.returncode != 0 and "Traceback" not in proc.stderr and proc.stderr.strip()
    finally:
        rt.cleanup()


@pytest.mark.parametrize("kind", list(CORRUPT))
def test_load_of_a_corrupt_record_is_a_container_error(tmp_path: Path, kind: str) -> None:
    root = Root(str(tmp_path))
    cid = "a" * 64
    os.makedirs(root.container_dir(cid))
    Path(state.path(root, cid)).write_bytes(CORRUPT[kind])
    with pytest.raises(state.ContainerError) as info:
        state.load(root, cid)
    assert "cannot read container" in info.value.msg
    assert state.all_records(root) == []


@pytest.mark.parametrize("field, value", [("id", "b" * 64), ("created", "yesterday"), ("pid", True),
                                          ("ports", [1]), ("name", None), ("env", []),
                                          ("addresses", "10.0.0.2/24"), ("exit_code", "3")])
def test_record_with_a_wrong_field_is_refused(tmp_path: Path, field: str, value: object) -> None:
    root = Root(str(tmp_path))
    cid = "a" * 64
    rec = _good_record(cid)
    os.makedirs(root.container_dir(cid))
    Path(state.path(root, cid)).write_text(json.dumps(rec))
    assert state.load(root, cid).name == "n"
    rec[field] = value
    Path(state.path(root, cid)).write_text(json.dumps(rec))
    with pytest.raises(state.ContainerError):
        state.load(root, cid)
