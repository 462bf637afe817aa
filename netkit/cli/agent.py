"""``netkit agent``: serve plugin requests warm over a unix socket (netkit.agent.server)."""

from __future__ import annotations

import signal
import sys

import click

from netkit.agent import protocol
from netkit.cli.shared import require_root


@click.command()
@click.option("--socket", "path", envvar="NETKIT_AGENT_SOCKET", default=protocol.DEFAULT_SOCKET, show_default=True)
def agent(path: str) -> None:
    """Serve plugin requests warm over a unix socket (the plugin executables use it when it runs)."""
    from netkit.agent import server
    from netkit.cli import runtime_server

    require_root()
    runtime_server.start(path)  # before the agent's threads: the runtime server forks per command
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwinds serve(): the socket file goes
    click.echo(f"netkit agent listening on {path}", err=True)
    try:
        server.serve(path)
    except KeyboardInterrupt:
        pass


COMMANDS = [agent]
