"""Per-namespace sysctls (``/proc/sys/net`` follows the network namespace of the opening thread)."""

from __future__ import annotations

from netkit import errors


def _path(key: str) -> str:
    """``key`` is dotted (``net.ipv4.ip_forward``) or, where a part may hold dots (interface
    names), slashed (``net/ipv4/conf/br0.5/route_localnet``)."""
    return "/proc/sys/" + (key if "/" in key else key.replace(".", "/"))


def read(key: str) -> str | None:
    """Sysctl ``key``'s value, or None where it does not exist (or cannot be read)."""
    try:
        with open(_path(key), encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return None


def write(key: str, value: str) -> None:
    """Set sysctl ``key`` to ``value``."""
    try:
        with open(_path(key), "w", encoding="ascii") as f:
            f.write(value)
    except OSError as exc:
        raise errors.CNIError(errors.IO_FAILURE, f"failed to set {key}={value}", str(exc)) from None


def ensure(key: str, value: str) -> None:
    """Set sysctl ``key`` to ``value`` unless it already has it (key as for ``read``).

    Not for ``ip_forward``: see netkit.net.forwarding.
    """
    if read(key) != value:
        write(key, value)


def br_netfilter_active(version: int = 4) -> bool:
    """True when bridged frames of IP ``version`` traverse the IP netfilter hooks in this namespace
    (br_netfilter; IPv6 has a switch of its own)."""
    key = "net.bridge.bridge-nf-call-iptables" if version == 4 else "net.bridge.bridge-nf-call-ip6tables"
    return read(key) == "1"
