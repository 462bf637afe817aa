"""``netkit agent [status|stop]``: serve plugin requests warm over a unix socket (netkit.agent.server),
show the running agent, stop it."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import click

from netkit.cli.shared import agent_socket, fail, require_root

if TYPE_CHECKING:
    from netkit.agent.control import Found


@click.group(invoke_without_command=True)
@agent_socket("path")
@click.option("--lock-fd", type=int, default=None, hidden=True,
              help="The life lock, already taken by the launcher that started this agent.")
@click.option("--replace", is_flag=True, help="Stop an agent of another version on this socket and take over.")
@click.option("--replace-fd", type=int, default=None, hidden=True,
              help="The replace lock, already taken by the launcher that started this agent.")
@click.pass_context
def agent(ctx: click.Context, path: str, lock_fd: int | None, replace: bool, replace_fd: int | None) -> None:
    """Serve plugin requests warm over a unix socket (the plugin executables use it when it runs, and
    start it when it does not); SIGTERM stops it once the requests in flight are answered."""
    if ctx.invoked_subcommand is not None:
        return
    from netkit.agent import lifelock, server
    from netkit.cli import runtime_server

    require_root()
    click.echo(f"netkit agent (pid {os.getpid()}) starting on {path}", err=True)
    # Before the agent's threads: the runtime server forks per command.  Its claim on the socket path
    # keeps an agent that then loses the lock (LockHeld below) from taking the serving one's socket.
    runtime_server.start(path)
    try:
        server.serve(path, lock_fd=lock_fd, replace=replace, replace_fd=replace_fd)
    except lifelock.LockHeld as exc:
        if replace or lock_fd is not None:
            click.echo(f"netkit agent: not started: {exc}", err=True)  # a replacement that is not needed
            return
        fail(exc)
    except KeyboardInterrupt:
        pass


def _found(path: str) -> Found:
    """The agent on ``path``, or exit 1 with one line."""
    from netkit.agent import control

    require_root()
    try:
        return control.status(path)
    except control.NoAgent as exc:
        fail(exc)


@agent.command("status")
@agent_socket("path")
@click.option("--json", "as_json", is_flag=True, help="The agent's answer as JSON.")
def agent_status(path: str, as_json: bool) -> None:
    """Show the running agent: pid, version, uptime, requests served, memory.  Exit 1 if there is none."""
    found = _found(path)
    status = found.status
    if status is None:
        fail(ValueError(f"an agent of an older netkit version (pid {found.pid}) serves {path}; "
                        f"`netkit cni install` replaces it"))
    if as_json:
        click.echo(json.dumps(status, indent=2))
        return
    for label, key, unit in (("pid", "pid", ""), ("version", "version", ""), ("socket", "socket", ""),
                             ("uptime", "uptime_s", " s"), ("requests served", "requests_served", ""),
                             ("memory (RSS)", "rss_kib", " KiB"), ("memory high-water", "hwm_kib", " KiB")):
        click.echo(f"{label + ':':<19}{status.get(key, '?')}{unit}")


@agent.command("stop")
@agent_socket("path")
def agent_stop(path: str) -> None:
    """Stop the running agent once its requests in flight are answered.  Exit 1 if there is none."""
    from netkit.agent import control

    require_root()
    try:
        found = control.stop(path)
    except (control.NoAgent, TimeoutError) as exc:
        fail(exc)
    click.echo(f"stopped the netkit agent (pid {found.pid}) on {path}")


COMMANDS = [agent]
