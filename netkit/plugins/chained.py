"""What a plugin chained after another (portmap, dns) needs from the one before it."""

from __future__ import annotations

from netkit import errors
from netkit.cni.request import Request
from netkit.cni.result import Result


def previous(req: Request, plugin: str) -> Result:
    """The request's prevResult; without one, code 7 naming ``plugin`` (it must be chained)."""
    prev = req.prev_result
    if prev is None:
        raise errors.CNIError(errors.INVALID_CONFIG, f"{plugin} must be chained after a plugin that returns "
                              "the container's addresses (no prevResult)")
    return prev
