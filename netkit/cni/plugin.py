"""What a plugin provides to the handler: one function per CNI command (a plugin module is one).

Like the reference ``skel``, which is given cmdAdd/cmdDel/...: the protocol core is handed the
plugin, it never looks one up.
"""

from __future__ import annotations

from typing import Protocol

from netkit.cni.request import Request
from netkit.cni.result import Result


class Plugin(Protocol):
    """A CNI plugin's commands; each takes the parsed request and raises CNIError on failure."""

    def add(self, req: Request) -> Result:
        """ADD: attach, and return the result."""

    def delete(self, req: Request) -> None:
        """DEL: detach; nothing to detach is success."""

    def check(self, req: Request) -> None:
        """CHECK: raise if the attachment is not as ADD left it."""

    def status(self, req: Request) -> None:
        """STATUS: raise if the plugin is not ready for ADD."""

    def gc(self, req: Request) -> None:
        """GC: remove what no attachment in the request's valid list needs."""
