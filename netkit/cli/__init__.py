"""The ``netkit`` command: thin click verb files over the library; failures are reported as one line.

Click lives only in this package; the library never imports it.  One file per area:

- ``containers``: ``run``, ``ps``, ``inspect``, ``stop``, ``rm``, ``exec``, ``logs``, ``port``, ``system prune``
- ``networks``:   ``network create|ls|inspect|rm``
- ``agent``:      ``agent``, ``agent status|stop``
- ``cni``:        ``cni install|uninstall|add|del|check|gc|status``
- ``lab``:        ``lab up|down|test|inspect|exec|graph|vagrantfile|validate``
- ``shared``:     what they all use (one-line errors, the root check, the runtime root)
- ``commands``:   the click group of them all (``main``)
- ``thin``:       what the console script runs first: a container verb goes to the warm runtime server
                  when one listens (``runtime_server``), anything else to ``commands.main``

This package's ``__init__`` imports nothing: ``netkit.cli.thin`` must load without click.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's own import costs ~3 ms; mypy honours this spelling
if TYPE_CHECKING:
    from typing import Any


def __getattr__(name: str) -> Any:
    """``netkit.cli.main`` (the click group), imported on first use only."""
    if name == "main":
        from netkit.cli.commands import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
