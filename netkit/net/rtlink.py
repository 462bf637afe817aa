"""Links over netkit's own rtnetlink socket (rawnl.Socket): get, dump, create a bridge or a veth pair,
change, enslave, hairpin and VLAN of a bridge port, delete.

Kernel errors come out as OSError with the kernel's errno (ENODEV, EEXIST, ...); netkit.net.links
turns them into CNIError.  Every call acts on the namespace the socket was made in.
"""

from __future__ import annotations

import errno
import os
import _socket as socket  # not socket.py: its enum conversions cost a plugin exec ~2 ms
import struct
from dataclasses import dataclass

from netkit.net import rawnl
from netkit.net.rawnl import NLM_F_CREATE, NLM_F_EXCL, nested, string, u8, u32

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
IFINFOMSG = struct.Struct("=BxHiII")  # family, device type, index, flags, change mask
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_PROTINFO, IFLA_LINKINFO, IFLA_IFALIAS, IFLA_AF_SPEC, IFLA_NET_NS_FD = 12, 18, 20, 26, 28
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFLA_BR_VLAN_FILTERING = 7
IFLA_BRPORT_MODE = 4  # hairpin
IFLA_BRIDGE_VLAN_INFO = 2
BRIDGE_VLAN_INFO_PVID, BRIDGE_VLAN_INFO_UNTAGGED = 0x2, 0x4
IFF_UP, IFF_PROMISC = 0x1, 0x100
AF_BRIDGE = 7


@dataclass(frozen=True)
class Link:
    """What netkit reads of one link."""

    index: int
    name: str
    kind: str  # "bridge", "veth", ...; "" for plain devices
    master: int | None  # index of the bridge it is enslaved to
    flags: int  # IFF_* bits
    mtu: int
    address: str | None  # MAC, "aa:bb:cc:dd:ee:ff"
    alias: str | None

    @property
    def up(self) -> bool:
        """Administratively up."""
        return bool(self.flags & IFF_UP)


def _mac(raw: bytes | None) -> str | None:
    return None if raw is None else ":".join(f"{b:02x}" for b in raw)


def parse(payload: bytes) -> Link:
    """A Link from the payload of an RTM_NEWLINK message."""
    _, _, index, flags, _ = IFINFOMSG.unpack_from(payload)
    a = rawnl.attrs(payload, IFINFOMSG.size, len(payload))
    info = a.get(IFLA_LINKINFO)
    kind = rawnl.text(rawnl.attrs(info, 0, len(info)).get(IFLA_INFO_KIND)) if info is not None else None
    return Link(index=index, name=rawnl.text(a.get(IFLA_IFNAME)) or "", kind=kind or "",
                master=rawnl.word(a.get(IFLA_MASTER)), flags=flags, mtu=rawnl.word(a.get(IFLA_MTU)) or 0,
                address=_mac(a.get(IFLA_ADDRESS)), alias=rawnl.text(a.get(IFLA_IFALIAS)) or None)


def _ifinfo(index: int = 0, flags: int = 0, change: int = 0, family: int = socket.AF_UNSPEC) -> bytes:
    return IFINFOMSG.pack(family, 0, index, flags, change)


def _mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def get(nl: rawnl.Socket, name: str | None = None, index: int = 0) -> Link:
    """The link named ``name`` (or of ``index``); OSError ENODEV when there is none."""
    body = _ifinfo(index) + (string(IFLA_IFNAME, name) if name is not None else b"")
    for kind, payload in nl.call(RTM_GETLINK, body):
        if kind == RTM_NEWLINK:
            return parse(payload)
    raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))  # answered without a link


def dump(nl: rawnl.Socket, master: int | None = None) -> list[Link]:
    """Every link of the namespace, or only the ports of bridge ``master`` (filtered by the kernel
    when the socket is strict)."""
    body = _ifinfo() + (u32(IFLA_MASTER, master) if master is not None and nl.strict else b"")
    out = [parse(payload) for kind, payload in nl.dump(RTM_GETLINK, body) if kind == RTM_NEWLINK]
    return out if master is None else [link for link in out if link.master == master]


def create_bridge(nl: rawnl.Socket, name: str, mac: str, mtu: int | None = None,
                  vlan_filtering: bool = False) -> None:
    """Create bridge ``name`` (down) with a fixed MAC; OSError EEXIST when the name is taken."""
    data = nested(IFLA_INFO_DATA, u8(IFLA_BR_VLAN_FILTERING, 1)) if vlan_filtering else b""
    body = (_ifinfo() + string(IFLA_IFNAME, name) + rawnl.attr(IFLA_ADDRESS, _mac_bytes(mac))
            + (u32(IFLA_MTU, mtu) if mtu else b"") + nested(IFLA_LINKINFO, string(IFLA_INFO_KIND, "bridge"), data))
    nl.call(RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL)


def set_vlan_filtering(nl: rawnl.Socket, index: int, on: bool = True) -> None:
    """Turn VLAN filtering of bridge ``index`` on or off."""
    info = nested(IFLA_LINKINFO, string(IFLA_INFO_KIND, "bridge"),
                  nested(IFLA_INFO_DATA, u8(IFLA_BR_VLAN_FILTERING, int(on))))
    nl.call(RTM_NEWLINK, _ifinfo(index) + info)


def create_veth(nl: rawnl.Socket, name: str, peer: str, peer_netns: str | None = None, mtu: int | None = None,
                peer_mac: str | None = None) -> None:
    """Create veth ``name`` here with its peer ``peer`` made directly in the namespace at path
    ``peer_netns`` (here when None); OSError EEXIST when either name is taken on its side."""
    fd = os.open(peer_netns, os.O_RDONLY | os.O_CLOEXEC) if peer_netns else -1
    try:
        peer_attrs = (string(IFLA_IFNAME, peer) + (u32(IFLA_NET_NS_FD, fd) if fd >= 0 else b"")
                      + (u32(IFLA_MTU, mtu) if mtu else b"")
                      + (rawnl.attr(IFLA_ADDRESS, _mac_bytes(peer_mac)) if peer_mac else b""))
        info = nested(IFLA_LINKINFO, string(IFLA_INFO_KIND, "veth"),
                      nested(IFLA_INFO_DATA, nested(VETH_INFO_PEER, _ifinfo() + peer_attrs)))
        body = _ifinfo() + string(IFLA_IFNAME, name) + (u32(IFLA_MTU, mtu) if mtu else b"") + info
        nl.call(RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL)
    finally:
        if fd >= 0:
            os.close(fd)


def change(nl: rawnl.Socket, index: int, *, up: bool | None = None, promisc: bool | None = None,
           master: int | None = None, mtu: int | None = None, alias: str | None = None) -> None:
    """Change what is given of link ``index`` in one request: up/down, promiscuous mode, the bridge
    it is enslaved to (0: none), MTU, alias."""
    flags = change_mask = 0
    for bit, value in ((IFF_UP, up), (IFF_PROMISC, promisc)):
        if value is not None:
            change_mask |= bit
            flags |= bit if value else 0
    body = (_ifinfo(index, flags, change_mask) + (u32(IFLA_MASTER, master) if master is not None else b"")
            + (u32(IFLA_MTU, mtu) if mtu else b"") + (string(IFLA_IFALIAS, alias) if alias is not None else b""))
    nl.call(RTM_SETLINK, body)


def set_hairpin(nl: rawnl.Socket, index: int, on: bool = True) -> None:
    """Hairpin mode of bridge port ``index``: frames may leave by the port they came in."""
    nl.call(RTM_SETLINK, _ifinfo(index, family=AF_BRIDGE) + nested(IFLA_PROTINFO, u8(IFLA_BRPORT_MODE, int(on))))


def add_vlan(nl: rawnl.Socket, index: int, vid: int, pvid: bool = True, untagged: bool = True) -> None:
    """Let VLAN ``vid`` on bridge port ``index`` (by default as its PVID, egress untagged)."""
    flags = (BRIDGE_VLAN_INFO_PVID if pvid else 0) | (BRIDGE_VLAN_INFO_UNTAGGED if untagged else 0)
    spec = nested(IFLA_AF_SPEC, rawnl.attr(IFLA_BRIDGE_VLAN_INFO, struct.pack("=HH", flags, vid)))
    nl.call(RTM_SETLINK, _ifinfo(index, family=AF_BRIDGE) + spec)


def delete(nl: rawnl.Socket, index: int) -> None:
    """Delete link ``index`` (a veth takes its peer with it); OSError ENODEV when it is gone."""
    nl.call(RTM_DELLINK, _ifinfo(index))
