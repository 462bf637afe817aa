"""netkit-loopback: bring ``lo`` up in the container (drop-in for the reference ``loopback``).

Only ioctl(2) on ``lo``: no netlink library is imported, so every command stays a cheap exec.
"""

from __future__ import annotations

from netkit import errors
from netkit.cni.request import Request
from netkit.cni.result import Result
from netkit.net import ifflags, netns


def add(req: Request) -> Result:
    """Bring lo up and report its addresses; chained after another plugin, pass its result on.

    Chained (a prevResult), the result is the previous plugin's, as the reference loopback does: a
    runtime reads the pod's address from the chain's last result (containerd's CRI plugin fails a
    pod whose result has no eth0, so a conflist ending in netkit-loopback broke every pod).
    """
    with netns.entered(req.netns):
        ifflags.set_up("lo")
        v4 = ifflags.ipv4_interface("lo")
        v6 = ifflags.ipv6_enabled("lo")
    prev = req.prev_result
    if prev is not None:
        return prev
    ips = ([{"address": str(v4), "interface": 0}] if v4 else []) + ([{"address": "::1/128", "interface": 0}] if v6 else [])
    return {"interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": req.netns}], "ips": ips}


def delete(req: Request) -> None:
    """Bring lo down; a vanished namespace is fine."""
    if not req.netns or not netns.exists(req.netns) or netns.same_as_current(req.netns):
        return
    with netns.entered(req.netns):
        ifflags.set_up("lo", False)


def check(req: Request) -> None:
    """Fail unless lo is up with 127.0.0.1."""
    with netns.entered(req.netns):
        if not ifflags.is_up("lo"):
            raise errors.CNIError(errors.CHECK_FAILED, "lo is not up")
        v4 = ifflags.ipv4_interface("lo")
    if v4 is None or str(v4.ip) != "127.0.0.1":
        raise errors.CNIError(errors.CHECK_FAILED, "lo has no 127.0.0.1")


def gc(req: Request) -> None:
    """Nothing outlives a namespace here."""


def status(req: Request) -> None:
    """Always ready."""
