"""A plugin module with a bug, to prove the handler turns any exception into error JSON."""

from __future__ import annotations

from netkit.cni.request import Request
from netkit.cni.result import Result


def add(req: Request) -> Result:
    """Fails the way a bug would."""
    return {"ips": [1 / 0]}
