"""rtaddr: one link's addresses, filtered by the kernel, in a throwaway namespace."""

from __future__ import annotations

import ipaddress
import socket

from netkit.net import netns, rtaddr
from tests.sandbox import Sandbox


def test_one_links_addresses_and_no_others(box: Sandbox) -> None:
    h = box.host
    for argv in (["ip", "link", "add", "nka0", "type", "veth", "peer", "name", "nka1"],
                 ["ip", "addr", "add", "10.1.2.3/24", "dev", "nka0"], ["ip", "addr", "add", "10.1.3.3/28", "dev", "nka0"],
                 ["ip", "addr", "add", "fd00::5/64", "dev", "nka0"], ["ip", "addr", "add", "10.9.9.9/8", "dev", "nka1"]):
        assert h.run(*argv).returncode == 0, argv
    with netns.entered(h.path):
        got = {str(a) for a in rtaddr.link_addresses(socket.if_nametoindex("nka0"))}
        other = rtaddr.link_addresses(socket.if_nametoindex("nka1"))
        lo = rtaddr.link_addresses(socket.if_nametoindex("lo"))
    assert got == {"10.1.2.3/24", "10.1.3.3/28", "fd00::5/64"}
    assert other == {ipaddress.ip_interface("10.9.9.9/8")}
    assert ipaddress.ip_interface("127.0.0.1/8") in lo
