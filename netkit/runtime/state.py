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
    """Where the record of container ``cid`` lives."""
    return os.path.join(root.container_dir(cid), "config.json")


def save(root: Root, rec: Record) -> None:
    """Write the record (atomically: a crash leaves the old one or the new one)."""
    fileio.ensure_dir(root.container_dir(rec["id"]))
    fileio.write_atomic(path(root, rec["id"]), json.dumps(rec, indent=2).encode(), mode=0o600)


# The keys every reader indexes directly, with their JSON types: a record lacking one (hand-edited,
# written by a buggy version, damaged on disk) would crash every `ps`, `run` and `prune` that
# lists it, so it is refused at load instead.
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str, "name": str, "command": list, "env": dict, "cwd": str, "hostname": str, "network": str,
    "net_kind": str, "netns": str, "state": str, "created": (int, float), "pid": int, "auto_remove": bool,
    "log": str, "dns": list, "ports": list,
}


def _problem(rec: object, cid: str) -> str:
    """Why ``rec`` is not a usable record of container ``cid``, or "" when it is."""
    if not isinstance(rec, dict):
        return f"not a JSON object but {type(rec).__name__}"
    for key, kind in _FIELDS.items():
        value = rec.get(key)
        # bool is an int in Python, never a pid or a time.
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            return f"field {key!r} is missing or not of type {getattr(kind, '__name__', 'number')}"
    if rec["id"] != cid:
        return f"record names container {rec['id'][:12]!r}"
    if not all(isinstance(m, dict) for m in rec["ports"]):
        return "field 'ports' holds a non-object"
    return ""


def load(root: Root, cid: str) -> Record:
    """Read one record, with its state corrected if its process died unseen."""
    try:
        with open(path(root, cid), encoding="utf-8") as f:
            rec = json.load(f)
    except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ContainerError(f"cannot read container {cid[:12]}", str(exc)) from None
    problem = _problem(rec, cid)
    if problem:
        raise ContainerError(f"cannot read container {cid[:12]}: corrupt record", problem)
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
