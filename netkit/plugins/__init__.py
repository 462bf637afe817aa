"""The CNI plugins netkit ships, by executable name.

Each plugin module provides ``add``, ``delete``, ``check``, ``status`` and ``gc`` taking a
``netkit.cni.request.Request`` and holds no protocol code.  Modules are imported only when a command
needs them, so VERSION and "about" never pay for netlink.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from netkit import errors

# executable name -> (module, one-line description)
REGISTRY: dict[str, tuple[str, str]] = {
    "netkit-bridge": ("netkit.plugins.bridge", "Linux bridge + veth attachment, drop-in for 'bridge'"),
    "netkit-container": ("netkit.plugins.container", "joins another container's namespace (Docker's container: mode)"),
    "netkit-host": ("netkit.plugins.host", "the host's own namespace, changes nothing (Docker's host mode)"),
    "netkit-ipam": ("netkit.plugins.ipam", "host-local address management, drop-in for 'host-local'"),
    "netkit-loopback": ("netkit.plugins.loopback", "brings 'lo' up, drop-in for 'loopback'"),
    "netkit-none": ("netkit.plugins.none", "'lo' only, nothing else (Docker's none mode)"),
    "netkit-portmap": ("netkit.plugins.portmap", "publishes ports with DNAT, drop-in for 'portmap'"),
}


def describe(name: str) -> str:
    """One line saying what plugin ``name`` does."""
    return REGISTRY[name][1] if name in REGISTRY else "unknown plugin"


def load(name: str) -> ModuleType:
    """Import the module implementing plugin ``name``."""
    if name not in REGISTRY:
        raise errors.CNIError(errors.INTERNAL, "unknown netkit plugin", name)
    return importlib.import_module(REGISTRY[name][0])
