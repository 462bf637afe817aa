"""netkit-loopback: bring ``lo`` up in the container (drop-in for the reference ``loopback``)."""

from __future__ import annotations

import ipaddress

from netkit import errors
from netkit.cni.request import Request
from netkit.cni.result import Result
from netkit.net import links, netns
from netkit.net.netlink import IPRoute, lookup


def add(req: Request) -> Result:
    """Bring lo up and report its addresses."""
    with netns.entered(req.netns), IPRoute() as ipr:
        lo = lookup(ipr, "lo")
        if lo is None:
            raise errors.CNIError(errors.KERNEL, "no loopback device in the namespace")
        links.up(ipr, lo["index"])
        have = sorted(links.addresses(ipr, lo["index"]), key=lambda a: (a.version, a))
    return {
        "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": req.netns}],
        "ips": [{"address": str(a), "interface": 0} for a in have],
    }


def delete(req: Request) -> None:
    """Bring lo down; a vanished namespace is fine."""
    if not req.netns or not netns.exists(req.netns) or netns.same_as_current(req.netns):
        return
    with netns.entered(req.netns), IPRoute() as ipr:
        lo = lookup(ipr, "lo")
        if lo is not None:
            ipr.link("set", index=lo["index"], state="down")


def check(req: Request) -> None:
    """Fail unless lo is up with 127.0.0.1."""
    with netns.entered(req.netns), IPRoute() as ipr:
        lo = lookup(ipr, "lo")
        if lo is None or not lo["flags"] & 1:
            raise errors.CNIError(errors.CHECK_FAILED, "lo is not up")
        if ipaddress.ip_interface("127.0.0.1/8") not in links.addresses(ipr, lo["index"]):
            raise errors.CNIError(errors.CHECK_FAILED, "lo has no 127.0.0.1")


def gc(req: Request) -> None:
    """Nothing outlives a namespace here."""


def status(req: Request) -> None:
    """Always ready."""
