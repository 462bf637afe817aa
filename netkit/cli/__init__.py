"""The ``netkit`` command: thin click verb files over the library; failures are reported as one line.

Click lives only in this package; the library never imports it.  One file per area:

- ``containers``: ``run``, ``ps``, ``inspect``, ``stop``, ``rm``, ``exec``, ``logs``, ``port``, ``system prune``
- ``networks``:   ``network create|ls|inspect|rm``
- ``agent``:      ``agent``, ``agent status|stop``
- ``cni``:        ``cni install|uninstall|add|del|check|gc|status``
- ``lab``:        ``lab up|down|test|inspect|exec|graph|vagrantfile|validate``
- ``shared``:     what they all use (one-line errors, the root check, the runtime root)
"""

from __future__ import annotations

import click

from netkit import __version__
from netkit.cli import agent, cni, containers, lab, networks


@click.group()
@click.version_option(__version__, prog_name="netkit")
@click.option("--root", envvar="NETKIT_ROOT", default=None, metavar="DIR",
              help="Where this netkit host keeps its state (default /var/lib/netkit).")
@click.pass_context
def main(ctx: click.Context, root: str | None) -> None:
    """netkit: container networking (CNI plugins, runtime, labs)."""
    from netkit.launch import invoker

    invoker.use()  # netkit's own plugins, wherever a command runs one, answer without an exec
    ctx.obj = root


for _verbs in (containers, networks, agent, cni, lab):
    for _command in _verbs.COMMANDS:
        main.add_command(_command)
