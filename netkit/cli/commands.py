"""The ``netkit`` click group: every verb file's commands under one ``main`` (see the package's docstring)."""

from __future__ import annotations

import click

from netkit import __version__
from netkit.cli import agent, cni, containers, lab, networks, node


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


for _verbs in (containers, networks, agent, cni, lab, node):
    for _command in _verbs.COMMANDS:
        main.add_command(_command)
