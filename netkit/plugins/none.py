"""netkit-none: Docker's ``--network none`` — the container gets ``lo`` and nothing else.

ADD and CHECK are netkit-loopback's (called, not copied).  DEL undoes nothing: the namespace had
``lo`` before ADD and keeps it, so DEL succeeds whatever state the namespace is in, or none at all.
"""

from __future__ import annotations

from netkit.cni.request import Request
from netkit.cni.result import Result
from netkit.plugins import loopback


def add(req: Request) -> Result:
    """Bring lo up in CNI_NETNS and report only lo."""
    return loopback.add(req)


def delete(req: Request) -> None:
    """Nothing to undo; succeeds even when the namespace is gone."""


def check(req: Request) -> None:
    """Fail (106) unless lo is up with 127.0.0.1."""
    loopback.check(req)


def gc(req: Request) -> None:
    """Nothing outlives a namespace here."""
    loopback.gc(req)


def status(req: Request) -> None:
    """Always ready."""
    loopback.status(req)
