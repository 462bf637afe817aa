"""Per-namespace sysctls (``/proc/sys/net`` follows the network namespace of the opening thread)."""

from __future__ import annotations

from netkit import errors


def ensure(key: str, value: str) -> None:
    """Set sysctl ``key`` to ``value`` unless it already has it.

    ``key`` is dotted (``net.ipv4.ip_forward``) or, where a part may hold dots (interface
    names), slashed (``net/ipv4/conf/br0.5/route_localnet``).
    """
    path = "/proc/sys/" + (key if "/" in key else key.replace(".", "/"))
    try:
        with open(path, encoding="ascii") as f:
            if f.read().strip() == value:
                return
        with open(path, "w", encoding="ascii") as f:
            f.write(value)
    except OSError as exc:
        raise errors.CNIError(errors.IO_FAILURE, f"failed to set {key}={value}", str(exc)) from None


def br_netfilter_active() -> bool:
    """True when bridged IP frames traverse the IP netfilter hooks in this namespace (br_netfilter)."""
    try:
        with open("/proc/sys/net/bridge/bridge-nf-call-iptables", encoding="ascii") as f:
            return f.read().strip() == "1"
    except OSError:
        return False
