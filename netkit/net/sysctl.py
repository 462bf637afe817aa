"""Per-namespace sysctls (``/proc/sys/net`` follows the network namespace of the opening thread)."""

from __future__ import annotations

from netkit import errors


def ensure(key: str, value: str) -> None:
    """Set ``net.*`` sysctl ``key`` (dotted) to ``value`` unless it already has it."""
    path = "/proc/sys/" + key.replace(".", "/")
    try:
        with open(path, encoding="ascii") as f:
            if f.read().strip() == value:
                return
        with open(path, "w", encoding="ascii") as f:
            f.write(value)
    except OSError as exc:
        raise errors.CNIError(errors.IO_FAILURE, f"failed to set {key}={value}", str(exc)) from None
