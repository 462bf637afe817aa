"""Interface flags and the IPv4 address of one interface through ioctl(2): stdlib only.

For ``lo`` this is all a plugin needs, and it spares the ~150 ms of importing a netlink library.
Acts on the network namespace of the calling thread (the socket is made there).
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import socket
import struct

from netkit import errors

_SIOCGIFFLAGS, _SIOCSIFFLAGS, _SIOCGIFADDR, _SIOCGIFNETMASK = 0x8913, 0x8914, 0x8915, 0x891B
IFF_UP = 0x1


def _ifreq(name: str, rest: bytes = b"") -> bytes:
    return struct.pack("16s", name.encode()) + rest.ljust(24, b"\0")


def _ioctl(request: int, name: str, rest: bytes = b"") -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            return fcntl.ioctl(sock, request, _ifreq(name, rest))
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                raise errors.CNIError(errors.KERNEL, f"no interface {name} in the namespace") from None
            raise


def is_up(name: str) -> bool:
    """True when the interface is administratively up."""
    return bool(struct.unpack_from("H", _ioctl(_SIOCGIFFLAGS, name), 16)[0] & IFF_UP)


def set_up(name: str, up: bool = True) -> None:
    """Set or clear IFF_UP."""
    flags = struct.unpack_from("H", _ioctl(_SIOCGIFFLAGS, name), 16)[0]
    flags = flags | IFF_UP if up else flags & ~IFF_UP
    _ioctl(_SIOCSIFFLAGS, name, struct.pack("H", flags))


def ipv4_interface(name: str) -> ipaddress.IPv4Interface | None:
    """The interface's (first) IPv4 address with its prefix, or None."""
    try:
        addr = _ioctl(_SIOCGIFADDR, name)[20:24]
        mask = _ioctl(_SIOCGIFNETMASK, name)[20:24]
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL:
            return None
        raise
    return ipaddress.IPv4Interface(f"{socket.inet_ntoa(addr)}/{socket.inet_ntoa(mask)}")


def ipv6_enabled(name: str) -> bool:
    """False when IPv6 is disabled on the interface (then lo has no ::1)."""
    try:
        with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", encoding="ascii") as f:
            return f.read().strip() == "0"
    except OSError:
        return False
