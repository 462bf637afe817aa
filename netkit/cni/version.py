"""CNI spec versions netkit speaks and the rules that depend on them."""

from __future__ import annotations

from netkit import errors

SUPPORTED: tuple[str, ...] = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = SUPPORTED[-1]

# The first spec version that defines each command; older configs must not use it.
_SINCE = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}


def parse(version: str) -> tuple[int, ...]:
    """Turn "1.0.0" into (1, 0, 0)."""
    return tuple(int(part) for part in version.split("."))


def require_supported(version: object) -> str:
    """Return ``version`` if netkit speaks it, else raise the spec's code 1."""
    if not isinstance(version, str) or version not in SUPPORTED:
        raise errors.CNIError(
            errors.INCOMPATIBLE_VERSION,
            "incompatible CNI versions",
            f"config is {version!r}, plugin supports {', '.join(SUPPORTED)}",
        )
    return version


def require_command_allowed(command: str, version: str) -> None:
    """Refuse a command that the config's spec version does not define (CHECK before 0.4.0...)."""
    since = _SINCE.get(command)
    if since and parse(version) < parse(since):
        raise errors.CNIError(
            errors.INCOMPATIBLE_VERSION,
            f"config version does not allow {command}",
            f"{command} needs cniVersion {since} or later, config is {version}",
        )
