"""Container records: one JSON file per container, written atomically under the root's lock."""

from __future__ import annotations

import json
import os
import secrets
import time
from typing import Any

from netkit import errors, fileio
from netkit.runtime.root import Root

Record = dict[str, Any]


class ContainerError(errors.CNIError):
    """A runtime failure the CLI reports in one line."""

    def __init__(self, msg: str, details: str = "") -> None:
        super().__init__(errors.INTERNAL, msg, details)


def new_id() -> str:
    """A container ID: 64 hex digits, like Docker's."""
    return secrets.token_hex(32)


def path(root: Root, cid: str) -> str:
    return os.path.join(root.container_dir(cid), "config.json")


def save(root: Root, rec: Record) -> None:
    """Write the record (atomically: a crash leaves the old one or the new one)."""
    fileio.ensure_dir(root.container_dir(rec["id"]))
    fileio.write_atomic(path(root, rec["id"]), json.dumps(rec, indent=2).encode(), mode=0o600)


def load(root: Root, cid: str) -> Record:
    """Read one record, with its state corrected if its process died unseen."""
    try:
        with open(path(root, cid), encoding="utf-8") as f:
            rec = json.load(f)
    except (OSError, ValueError) as exc:
        raise ContainerError(f"cannot read container {cid[:12]}", str(exc)) from None
    return refresh(rec)


def all_records(root: Root) -> list[Record]:
    """Every container of the root, oldest first; unreadable records are skipped."""
    out = []
    try:
        names = os.listdir(root.containers)
    except FileNotFoundError:
        return []
    for cid in names:
        try:
            out.append(load(root, cid))
        except ContainerError:
            continue
    return sorted(out, key=lambda r: r.get("created", 0))


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (tells a live process from a reused PID)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_identity(pid: int) -> str | None:
    """What to store to recognise this process later."""
    return _start_time(pid)


def alive(rec: Record) -> bool:
    """True while the container's process runs."""
    pid = rec.get("pid") or 0
    if pid <= 0:
        return False
    start = _start_time(pid)
    if start is None or start != rec.get("pid_start"):
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def refresh(rec: Record) -> Record:
    """A running record whose process is gone (supervisor killed too) shows as exited."""
    if rec.get("state") == "running" and not alive(rec):
        rec["state"] = "exited"
        rec.setdefault("exit_code", -1)
        rec["finished_at"] = rec.get("finished_at") or time.time()
    return rec


def find(root: Root, ref: str) -> Record:
    """A container by name, full ID or unique ID prefix."""
    records = all_records(root)
    for rec in records:
        if rec.get("name") == ref or rec["id"] == ref:
            return rec
    matches = [r for r in records if r["id"].startswith(ref)] if len(ref) >= 3 else []
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ContainerError(f"container reference {ref!r} is ambiguous")
    raise ContainerError(f"no such container: {ref}")


def remove(root: Root, cid: str) -> None:
    """Delete a container's record and log."""
    d = root.container_dir(cid)
    for name in ("config.json", "log", "resolv.conf", "hostname", "hosts"):
        try:
            os.unlink(os.path.join(d, name))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(d)
    except OSError:
        pass
