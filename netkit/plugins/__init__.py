"""The CNI plugins netkit ships, by executable name.

Each plugin module provides ``add``, ``delete``, ``check``, ``status`` and ``gc`` taking a
``netkit.cni.request.Request`` (``netkit.cni.plugin.Plugin``) and holds no protocol code.  Modules
are imported only when a command needs them, so VERSION and "about" never pay for netlink.  A
module may also provide ``warm_up()``: what a long-lived process (the agent) should import ahead
of the first request beyond the module itself.
"""

from __future__ import annotations

from types import ModuleType

from netkit import errors

TYPE_CHECKING = False  # typing's own import costs a plugin exec ~3 ms; mypy honours this spelling
if TYPE_CHECKING:
    from netkit.cni.request import Request
    from netkit.cni.result import Result

# executable name -> (module, one-line description)
REGISTRY: dict[str, tuple[str, str]] = {
    "netkit-bridge": ("netkit.plugins.bridge", "Linux bridge + veth attachment, drop-in for 'bridge'"),
    "netkit-dns": ("netkit.plugins.dns", "names of a network's containers on its gateway, podman dnsname's keys"),
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
    import importlib  # here, not above: its warnings import would cost every VERSION exec

    return importlib.import_module(REGISTRY[name][0])


class Registered:
    """Plugin ``name`` for the protocol handler: each command imports the module on first use.

    The handler answers VERSION without touching the plugin, so a plugin executable (or the agent)
    hands this over without paying for the module's imports until a command needs them.  An
    unknown name fails at the first command, as the CNI error the handler reports.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def add(self, req: Request) -> Result:
        """ADD of the plugin's module."""
        return load(self.name).add(req)

    def delete(self, req: Request) -> None:
        """DEL of the plugin's module."""
        load(self.name).delete(req)

    def check(self, req: Request) -> None:
        """CHECK of the plugin's module."""
        load(self.name).check(req)

    def status(self, req: Request) -> None:
        """STATUS of the plugin's module."""
        load(self.name).status(req)

    def gc(self, req: Request) -> None:
        """GC of the plugin's module."""
        load(self.name).gc(req)


def get(name: str) -> Registered:
    """Plugin ``name`` as the protocol handler takes it (``handler.handle(plugins.get(name), ...)``)."""
    return Registered(name)


def warm_up() -> None:
    """Import every plugin module and what each names in its ``warm_up()`` (for a long-lived process)."""
    hooks = {getattr(load(name), "warm_up", None) for name in REGISTRY}  # plugins may share one
    for hook in hooks - {None}:
        hook()
