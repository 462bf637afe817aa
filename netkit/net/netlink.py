"""The one place netkit imports pyroute2.

pyroute2's package ``__init__`` imports every subsystem it has (NDB, conntrack, ethtool, IPDB...):
~280 ms measured on these machines (`python -X importtime -c 'import pyroute2'`).  A plugin needs
only the rtnetlink client, so when nothing has imported pyroute2 yet we register a bare package
module and import ``pyroute2.iproute.linux`` through it: ~140 ms, the same classes.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from typing import Any


def _load() -> tuple[Any, Any]:
    if "pyroute2" not in sys.modules:
        spec = importlib.util.find_spec("pyroute2")
        if spec is not None and spec.submodule_search_locations is not None:
            stub = types.ModuleType("pyroute2")
            stub.__path__ = list(spec.submodule_search_locations)
            stub.__spec__ = spec
            stub.__file__ = spec.origin
            sys.modules["pyroute2"] = stub
    from pyroute2.iproute.linux import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    return IPRoute, NetlinkError


IPRoute, NetlinkError = _load()
