"""Parse and validate one CNI invocation: the CNI_* environment and the network config on stdin."""

from __future__ import annotations

import json
import re
from typing import Any, Mapping, NamedTuple

from netkit import errors
from netkit.cni import result as results
from netkit.cni import version as versions

COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")

# Which CNI_* variables each command cannot do without (spec, "Parameters").
_REQUIRED_ENV = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "GC": (),
    "STATUS": (),
    "VERSION": (),
}

# The spec's restrictions: container IDs are alphanumeric plus "_.-", starting alphanumeric.
_CONTAINER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
IFNAME_MAX = 15  # IFNAMSIZ - 1


class Request(NamedTuple):
    """One plugin invocation, validated."""

    command: str
    config: dict[str, Any]
    cni_version: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: dict[str, str] = {}  # noqa: RUF012 - never mutated
    path: list[str] = []  # noqa: RUF012
    env: Mapping[str, str] = {}  # noqa: RUF012
    stdin: bytes = b""

    @property
    def network(self) -> str:
        """The network's name from the config."""
        return str(self.config.get("name", ""))

    @property
    def prev_result(self) -> results.Result | None:
        """The previous plugin's result in the internal shape, or None."""
        raw = self.config.get("prevResult")
        return results.normalize(raw) if raw is not None else None

    @property
    def valid_attachments(self) -> set[tuple[str, str]]:
        """For GC: the (containerID, ifname) pairs still in use (``cni.dev/valid-attachments``)."""
        raw = self.config.get("cni.dev/valid-attachments", [])
        if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
            raise errors.CNIError(errors.INVALID_CONFIG, "cni.dev/valid-attachments must be a list of objects")
        return {(str(item.get("containerID", "")), str(item.get("ifname", ""))) for item in raw}

    @property
    def runtime_config(self) -> dict[str, Any]:
        """The config's runtimeConfig object (capability arguments), or {}."""
        rc = self.config.get("runtimeConfig")
        return rc if isinstance(rc, dict) else {}


def flag(config: dict[str, Any], key: str, default: bool = False) -> bool:
    """A boolean config key; anything but true/false is the spec's code 7."""
    value = config.get(key, default)
    if not isinstance(value, bool):
        raise errors.CNIError(errors.INVALID_CONFIG, f"{key!r} must be true or false", repr(value))
    return value


def validate_ifname(name: str) -> str:
    """Refuse interface names the kernel would refuse or that would escape a path."""
    if not name or len(name.encode()) > IFNAME_MAX:
        raise errors.CNIError(errors.INVALID_ENV, "invalid interface name",
                              f"{name!r}: must be 1 to {IFNAME_MAX} bytes")
    if name in (".", "..") or any(c in name for c in "/:") or any(c.isspace() for c in name):
        raise errors.CNIError(errors.INVALID_ENV, "invalid interface name",
                              f"{name!r}: must not be '.' or '..' or contain '/', ':' or whitespace")
    return name


def parse_args(raw: str) -> dict[str, str]:
    """Parse CNI_ARGS ("K1=V1;K2=V2")."""
    out: dict[str, str] = {}
    for pair in filter(None, raw.split(";")):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise errors.CNIError(errors.INVALID_ENV, "invalid CNI_ARGS", f"pair {pair!r} is not KEY=VALUE")
        out[key] = value
    return out


def decode_config(stdin: bytes) -> dict[str, Any]:
    """Decode the network config; any malformed input becomes the spec's code 6."""
    try:
        config = json.loads(stdin.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise errors.CNIError(errors.DECODE_FAILURE, "failed to decode network config", str(exc)[:300]) from None
    if not isinstance(config, dict):
        raise errors.CNIError(errors.DECODE_FAILURE, "network config is not a JSON object")
    return config


def parse(env: Mapping[str, str], stdin: bytes) -> Request:
    """Build a validated Request from the environment and stdin (everything but VERSION)."""
    command = env.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        raise errors.CNIError(errors.INVALID_ENV, "invalid CNI_COMMAND",
                              f"{command!r}; expected one of {', '.join(COMMANDS)}")
    missing = [name for name in _REQUIRED_ENV[command] if not env.get(name)]
    if missing:
        raise errors.CNIError(errors.INVALID_ENV, "required environment variables missing",
                              ", ".join(missing))
    config = decode_config(stdin)
    cni_version = versions.require_supported(config.get("cniVersion"))
    versions.require_command_allowed(command, cni_version)
    if command != "VERSION" and not isinstance(config.get("name"), str):
        raise errors.CNIError(errors.INVALID_CONFIG, "network config has no name")
    container_id = env.get("CNI_CONTAINERID", "")
    if container_id and not _CONTAINER_ID.fullmatch(container_id):
        raise errors.CNIError(errors.INVALID_ENV, "invalid CNI_CONTAINERID",
                              f"{container_id!r}: alphanumerics, '_', '.', '-' only, starting alphanumeric")
    ifname = env.get("CNI_IFNAME", "")
    if ifname or command in ("ADD", "CHECK", "DEL"):
        validate_ifname(ifname)
    return Request(
        command=command,
        config=config,
        cni_version=cni_version,
        container_id=container_id,
        netns=env.get("CNI_NETNS", ""),
        ifname=ifname,
        args=parse_args(env.get("CNI_ARGS", "")),
        path=[p for p in env.get("CNI_PATH", "").split(":") if p],
        env=env,
        stdin=stdin,
    )
