"""Container records: the ``Container`` type and the one JSON file per container that stores it.

This module is the only place that turns a record into JSON and back: everything else in the
runtime reads and sets the attributes of a ``Container``.  The file format is the one netkit has
always written (same keys, same JSON types), so records written by earlier versions still load.

A container has a list of endpoints, one per network it is attached to (``eth0``, ``eth1``, ...).
The file keeps describing the primary endpoint (the one on ``network``) with the keys it always had
(``ip``, ``cni_result``, ``addresses``), so an earlier netkit still reads it; the full list goes
under ``endpoints`` only when those keys cannot tell it (more networks, aliases, or none left).
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from netkit import errors, fileio, procinfo
from netkit.runtime.root import Root


class ContainerError(errors.CNIError):
    """A runtime failure the CLI reports in one line."""

    def __init__(self, msg: str, details: str = "") -> None:
        super().__init__(errors.INTERNAL, msg, details)


@dataclass(kw_only=True)
class Endpoint:
    """The container on one network: its interface, what was asked for it, what the plugins answered."""

    network: str  # a bridge network's name, or the mode as given (host, none, container:REF)
    ifname: str = "eth0"
    ip: str = ""  # the fixed address asked for (--ip, or connect --ip)
    aliases: list[str] = field(default_factory=list)  # --network-alias / connect --alias, as asked
    cni_result: dict[str, Any] = field(default_factory=dict)  # the chain's ADD result, as the plugins gave it
    addresses: list[str] = field(default_factory=list)  # its non-loopback CIDRs

    def to_json(self) -> dict[str, Any]:
        """The endpoint as the record's ``endpoints`` list holds it."""
        return dataclasses.asdict(self)


@dataclass(kw_only=True)
class Container:
    """One container as the runtime records it (fields in the order the file has always had)."""

    id: str
    name: str
    command: list[str]
    env: dict[str, str]
    cwd: str
    hostname: str
    network: str  # a bridge network's name, or the mode as given: host, none, container:REF
    net_kind: str  # bridge | host | none | container
    owner: str = ""  # container mode: the ID of the container whose namespace this one joined
    ports: list[dict[str, Any]] = field(default_factory=list)  # CNI portMappings, as handed to the plugins
    dns: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    state: str = "created"  # created | running | exited
    created: float
    pid: int = 0
    auto_remove: bool = False
    log: str
    netns: str  # the namespace's path as recorded ("" in host mode)
    endpoints: list[Endpoint] = field(default_factory=list)  # eth0 first; the primary is the one on `network`
    # Set once the process started or ended: absent from the file until then.
    pid_start: str | None = None  # procinfo.start_time of pid: tells it from a reused PID
    started_at: float | None = None
    exit_code: int | None = None
    finished_at: float | None = None
    error: str | None = None  # why the process could not be started

    @property
    def primary(self) -> Endpoint | None:
        """The endpoint on ``network`` (the default route's, ``-p``'s), if still attached."""
        return next((ep for ep in self.endpoints if ep.network == self.network), None)

    @property
    def ip(self) -> str:
        """The fixed address asked for on the primary network ("" when none)."""
        return self.primary.ip if self.primary else ""

    @property
    def addresses(self) -> list[str]:
        """Every endpoint's non-loopback CIDRs, the primary's first."""
        eps = sorted(self.endpoints, key=lambda ep: ep is not self.primary)
        return [a for ep in eps for a in ep.addresses]

    def endpoint(self, network: str) -> Endpoint | None:
        """The endpoint on ``network``, if attached."""
        return next((ep for ep in self.endpoints if ep.network == network), None)


_FIELDS = {f.name: f for f in dataclasses.fields(Container)}
# The fields a record has had from its first write: a record lacking one (hand-edited, written by
# a buggy version, damaged on disk) would crash every `ps`, `run` and `prune` that lists it, so it
# is refused at load instead.  The others default when absent.
_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "id": str, "name": str, "command": list, "env": dict, "cwd": str, "hostname": str, "network": str,
    "net_kind": str, "netns": str, "state": str, "created": (int, float), "pid": int, "auto_remove": bool,
    "log": str, "dns": list, "ports": list,
}
_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "owner": str, "ip": str, "labels": dict, "cni_result": dict, "addresses": list, "pid_start": str,
    "started_at": (int, float), "exit_code": int, "finished_at": (int, float), "error": str, "endpoints": list,
}
# Written only once set, as before: a record just created has none of them.
_LATER = ("cni_result", "addresses", "pid_start", "started_at", "exit_code", "finished_at", "error")
# The file's keys in the order netkit has always written them; `endpoints` (new) comes last.
_ORDER = ("id", "name", "command", "env", "cwd", "hostname", "network", "net_kind", "owner", "ports", "ip", "dns",
          "labels", "state", "created", "pid", "auto_remove", "log", "netns", "cni_result", "addresses",
          "pid_start", "started_at", "exit_code", "finished_at", "error", "endpoints")
_ENDPOINT: dict[str, type] = {"network": str, "ifname": str, "ip": str, "aliases": list, "cni_result": dict,
                              "addresses": list}


def _of_type(value: object, kind: type | tuple[type, ...]) -> bool:
    # bool is an int in Python, never a pid or a time.
    return isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)


def _problem(data: object, cid: str) -> str:
    """Why ``data`` is not a usable record of container ``cid``, or "" when it is."""
    if not isinstance(data, dict):
        return f"not a JSON object but {type(data).__name__}"
    for key, kind in _REQUIRED.items():
        if not _of_type(data.get(key), kind):
            return f"field {key!r} is missing or not of type {getattr(kind, '__name__', 'number')}"
    for key, kind in _OPTIONAL.items():
        if data.get(key) is not None and not _of_type(data[key], kind):
            return f"field {key!r} is not of type {getattr(kind, '__name__', 'number')}"
    if data["id"] != cid:
        return f"record names container {data['id'][:12]!r}"
    if not all(isinstance(m, dict) for m in data["ports"]):
        return "field 'ports' holds a non-object"
    for ep in data.get("endpoints") or []:
        if not isinstance(ep, dict) or not isinstance(ep.get("network"), str):
            return "field 'endpoints' holds an entry without a network"
        if not all(ep.get(k) is None or _of_type(ep[k], kind) for k, kind in _ENDPOINT.items()):
            return f"endpoint on {ep['network']!r} has a field of the wrong type"
    return ""


def _legacy_endpoints(data: dict[str, Any]) -> list[Endpoint]:
    """The one endpoint a record without ``endpoints`` describes with its primary keys."""
    return [Endpoint(network=data["network"], ip=data.get("ip") or "", cni_result=data.get("cni_result") or {},
                     addresses=list(data.get("addresses") or []))]


def _from_json(data: dict[str, Any]) -> Container:
    """A checked record (see _problem) as a Container; keys it does not know are dropped."""
    known = {k: v for k, v in data.items() if k in _FIELDS and v is not None}
    if data.get("endpoints") is None:
        known["endpoints"] = _legacy_endpoints(data)
    else:
        known["endpoints"] = [Endpoint(**{k: v for k, v in ep.items() if k in _ENDPOINT and v is not None})
                              for ep in data["endpoints"]]
    return Container(**known)


def _to_json(ctr: Container) -> dict[str, Any]:
    """The record as the file holds it: the fields set so far, in their order (see the module's docstring)."""
    primary = ctr.primary or Endpoint(network=ctr.network)
    values: dict[str, Any] = {f.name: getattr(ctr, f.name) for f in dataclasses.fields(ctr)}
    values.update(ip=primary.ip, cni_result=primary.cni_result, addresses=primary.addresses)
    out = {}
    for key in _ORDER:
        value = values[key]
        if key in _LATER and value in (None, {}, []):
            continue
        out[key] = value
    if ctr.endpoints == _legacy_endpoints(out):
        del out["endpoints"]
    else:
        out["endpoints"] = [ep.to_json() for ep in ctr.endpoints]
    return out


def new_id() -> str:
    """A container ID: 64 hex digits, like Docker's."""
    return secrets.token_hex(32)


def path(root: Root, cid: str) -> str:
    """Where the record of container ``cid`` lives."""
    return os.path.join(root.container_dir(cid), "config.json")


def save(root: Root, ctr: Container) -> None:
    """Write the record (atomically: a crash leaves the old one or the new one)."""
    fileio.ensure_dir(root.container_dir(ctr.id))
    fileio.write_atomic(path(root, ctr.id), json.dumps(_to_json(ctr), indent=2).encode(), mode=0o600)


def load(root: Root, cid: str) -> Container:
    """Read one record, with its state corrected if its process died unseen."""
    try:
        with open(path(root, cid), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ContainerError(f"cannot read container {cid[:12]}", str(exc)) from None
    problem = _problem(data, cid)
    if problem:
        raise ContainerError(f"cannot read container {cid[:12]}: corrupt record", problem)
    return refresh(_from_json(data))


def all_records(root: Root) -> list[Container]:
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
    return sorted(out, key=lambda c: c.created)


def alive(ctr: Container) -> bool:
    """True while the container's process runs (a zombie or a reused PID does not)."""
    if ctr.pid <= 0:
        return False
    start = procinfo.start_time(ctr.pid)
    return start is not None and start == ctr.pid_start


def refresh(ctr: Container) -> Container:
    """A running record whose process is gone (supervisor killed too) shows as exited."""
    if ctr.state == "running" and not alive(ctr):
        ctr.state = "exited"
        if ctr.exit_code is None:
            ctr.exit_code = -1
        ctr.finished_at = ctr.finished_at or time.time()
    return ctr


def find(root: Root, ref: str) -> Container:
    """A container by name, full ID or unique ID prefix."""
    records = all_records(root)
    for ctr in records:
        if ref in (ctr.name, ctr.id):
            return ctr
    matches = [c for c in records if c.id.startswith(ref)] if len(ref) >= 3 else []
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
