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

# The spec's restrictions: container IDs and network names are alphanumeric plus "_.-", starting
# alphanumeric (libcni's ValidateNetworkName applies the same rule).
_CONTAINER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_NETWORK_NAME = _CONTAINER_ID
IFNAME_MAX = 15  # IFNAMSIZ - 1
# No real config nests deeper than a handful of levels; bounding it here keeps every consumer
# (deepcopy, the indenting JSON encoder, prevResult conversion) far from Python's recursion limit,
# which it would otherwise hit only after ADD has created its objects.
MAX_DEPTH = 64

# Keys the spec defines for every plugin config, with the JSON type each must have (runtimeConfig
# of another type is read as empty, as before).
_SPEC_KEY_TYPES: dict[str, type] = {
    "type": str, "ipam": dict, "dns": dict, "capabilities": dict, "args": dict,
    "prevResult": dict,
}
_DNS_KEY_TYPES = {"nameservers": list, "domain": str, "search": list, "options": list}


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
    try:
        # Undecodable bytes in the environment arrive as lone surrogates, which no kernel name has.
        size = len(name.encode())
    except UnicodeEncodeError:
        raise errors.CNIError(errors.INVALID_ENV, "invalid interface name", f"{name!r}: not UTF-8") from None
    if not name or size > IFNAME_MAX:
        raise errors.CNIError(errors.INVALID_ENV, "invalid interface name",
                              f"{name!r}: must be 1 to {IFNAME_MAX} bytes")
    # NUL would silently cut the name short in netlink; other control characters are never meant.
    if name in (".", "..") or any(c in name for c in "/:") or any(c.isspace() or not c.isprintable() for c in name):
        raise errors.CNIError(errors.INVALID_ENV, "invalid interface name",
                              f"{name!r}: must not be '.' or '..' or contain '/', ':', whitespace "
                              "or control characters")
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
    if _depth(config) > MAX_DEPTH:
        raise errors.CNIError(errors.DECODE_FAILURE, "failed to decode network config",
                              f"nested more than {MAX_DEPTH} levels deep")
    return config


def _depth(value: object) -> int:
    """How deeply lists and objects nest in a decoded JSON value (iterative: any depth is safe)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: list[object] | None = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            children = None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _check_spec_keys(config: dict[str, Any]) -> None:
    """Refuse spec-defined keys of the wrong JSON type (code 7), so no plugin trips over them."""
    for key, kind in _SPEC_KEY_TYPES.items():
        if key in config and not isinstance(config[key], kind):
            raise errors.CNIError(errors.INVALID_CONFIG, f"{key!r} must be a JSON {_JSON_NAMES[kind]}",
                                  repr(config[key])[:200])
    ipam = config.get("ipam")
    if isinstance(ipam, dict) and "type" in ipam and not isinstance(ipam["type"], str):
        raise errors.CNIError(errors.INVALID_CONFIG, "'ipam.type' must be a string", repr(ipam["type"])[:200])
    dns = config.get("dns")
    for key, kind in _DNS_KEY_TYPES.items():
        if isinstance(dns, dict) and key in dns:
            value = dns[key]
            if not isinstance(value, kind) or kind is list and not all(isinstance(v, str) for v in value):
                raise errors.CNIError(errors.INVALID_CONFIG, f"'dns.{key}' must be a "
                                      f"{'list of strings' if kind is list else 'string'}", repr(value)[:200])


_JSON_NAMES = {str: "string", dict: "object", list: "array"}


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
    name = config.get("name")
    if command != "VERSION" and not isinstance(name, str):
        raise errors.CNIError(errors.INVALID_CONFIG, "network config has no name")
    # The name becomes a lease directory, part of an interface alias and firewall comments.
    if isinstance(name, str) and not _NETWORK_NAME.fullmatch(name):
        raise errors.CNIError(errors.INVALID_CONFIG, "invalid network name",
                              f"{name[:100]!r}: alphanumerics, '_', '.', '-' only, starting alphanumeric")
    _check_spec_keys(config)
    if "prevResult" in config:
        results.normalize(config["prevResult"])  # a malformed prevResult is refused before any work
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
