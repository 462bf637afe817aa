"""The runtime's container verbs over netkit.runtime: ``netkit run|ps|inspect|stop|rm|exec|logs|port``
and ``netkit system prune``."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from netkit.cli.shared import after_dashes, call, each, root


@click.command(context_settings={"allow_interspersed_args": False})
@click.option("--net", "--network", "networks", multiple=True,
              help="bridge (the default), a network name, host, none or container:NAME; repeat it for "
                   "several networks (eth0 on the first, which gives the default route); "
                   "name=NET,alias=A,ip=ADDR sets a network's own aliases and address")
@click.option("--network-alias", "aliases", multiple=True, help="A name of the container on its first network")
@click.option("-p", "--publish", multiple=True, help="[IP:][HOSTPORT:]CONTAINERPORT[/PROTO], ranges allowed")
@click.option("--name", default="")
@click.option("-d", "--detach", is_flag=True, help="Run in the background; output goes to `netkit logs`.")
@click.option("--rm", "auto_remove", is_flag=True, help="Remove the container when it exits.")
@click.option("--ip", default="", help="Fixed address on a user-defined network.")
@click.option("--hostname", default="")
@click.option("-e", "--env", multiple=True, help="KEY=VALUE (or KEY: taken from this environment)")
@click.option("--dns", multiple=True, help="Nameserver for the container's /etc/resolv.conf")
@click.option("-l", "--label", "labels", multiple=True, help="KEY=VALUE metadata shown by inspect")
@click.option("--init", is_flag=True, help="Run a small init as PID 1: forwards signals to CMD, reaps zombies.")
@click.option("--add-host", "add_hosts", multiple=True, help="NAME:IP or NAME:host-gateway line for /etc/hosts")
@click.option("--dns-search", multiple=True, help="Search domain for /etc/resolv.conf ('.' for none)")
@click.option("--dns-option", "dns_options", multiple=True, help="Option for /etc/resolv.conf (e.g. ndots:2)")
@click.option("--mac-address", default="", help="The container's MAC address on its network")
@click.argument("command", nargs=-1, required=True)
@click.pass_context
def run(ctx: click.Context, command: tuple[str, ...], labels: tuple[str, ...], **kw: Any) -> None:
    """Run CMD in a new container: netkit run [OPTIONS] -- CMD [ARGS...]."""
    from netkit.runtime import containers, ports

    rt = root(ctx)
    kw["labels"] = dict(item.partition("=")[::2] for item in labels)
    opts = containers.RunOptions(command=after_dashes(command), **{k: list(v) if isinstance(v, tuple) else v
                                                           for k, v in kw.items()})
    rec, code = call(lambda: containers.run(rt, opts))
    if opts.detach:
        for m in rec.ports:
            click.echo(f"published {ports.describe(m)}", err=True)
        click.echo(rec.id)
    sys.exit(code)


@click.command()
@click.option("-a", "--all", "show_all", is_flag=True, help="Show exited containers too.")
@click.pass_context
def ps(ctx: click.Context, show_all: bool) -> None:
    """List containers."""
    import time

    from netkit.runtime import ports, state

    rt = root(ctx)
    rows = [("CONTAINER ID", "COMMAND", "STATUS", "PORTS", "NAMES")]
    for rec in call(lambda: state.all_records(rt)):
        running = state.alive(rec)
        if not running and not show_all:
            continue
        since = time.time() - (rec.started_at or rec.created)
        status = f"Up {int(since)} seconds" if running else f"Exited ({rec.exit_code})"
        rows.append((rec.id[:12], " ".join(rec.command)[:30], status,
                     ", ".join(ports.describe(m) for m in rec.ports), rec.name))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


@click.command()
@click.option("-f", "--format", "fmt", default="", help="A Go template, e.g. '{{.NetworkSettings.IPAddress}}'")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def inspect(ctx: click.Context, fmt: str, names: tuple[str, ...]) -> None:
    """Show containers as JSON, or each through a Go template (docker inspect --format)."""
    from netkit.runtime import containers, template

    rt = root(ctx)
    shown = [call(lambda n=n: containers.inspect(rt, n)) for n in names]
    if not fmt:
        click.echo(json.dumps(shown, indent=2))
        return
    parsed = call(lambda: template.parse(fmt))  # a bad template fails before any output, as Docker's
    for value in shown:
        click.echo(call(lambda v=value: template.execute(parsed, v)))


@click.command()
@click.option("-t", "--time", "timeout", default=10, show_default=True, help="Seconds to wait before SIGKILL.")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def stop(ctx: click.Context, timeout: int, names: tuple[str, ...]) -> None:
    """Stop containers: SIGTERM, then SIGKILL after the timeout."""
    from netkit.runtime import containers

    rt = root(ctx)
    each(names, lambda n: containers.stop(rt, n, timeout))


@click.command()
@click.option("-f", "--force", is_flag=True, help="Kill a running container first.")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, force: bool, names: tuple[str, ...]) -> None:
    """Remove containers and release their network."""
    from netkit.runtime import containers

    rt = root(ctx)
    each(names, lambda n: containers.remove(rt, n, force))


@click.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-e", "--env", multiple=True)
@click.argument("name")
@click.argument("command", nargs=-1, required=True)
@click.pass_context
def exec_(ctx: click.Context, env: tuple[str, ...], name: str, command: tuple[str, ...]) -> None:
    """Run a command in a running container: netkit exec NAME -- CMD [ARGS...]."""
    from netkit.runtime import containers

    rt = root(ctx)
    sys.exit(call(lambda: containers.exec_in(rt, name, after_dashes(command), list(env))))


@click.command()
@click.argument("old")
@click.argument("new")
@click.pass_context
def rename(ctx: click.Context, old: str, new: str) -> None:
    """Rename a container (its name in the networks' DNS too)."""
    from netkit.runtime import rename as renaming

    rt = root(ctx)
    call(lambda: renaming.rename(rt, old, new))


@click.command()
@click.argument("name")
@click.pass_context
def logs(ctx: click.Context, name: str) -> None:
    """Print a container's output."""
    from netkit.runtime import containers

    rt = root(ctx)
    sys.stdout.buffer.write(call(lambda: containers.logs(rt, name)))


@click.command()
@click.argument("name")
@click.pass_context
def port(ctx: click.Context, name: str) -> None:
    """List a container's published ports."""
    from netkit.runtime import ports, state

    rt = root(ctx)
    for m in call(lambda: state.find(rt, name)).ports:
        click.echo(ports.describe(m))


@click.group()
def system() -> None:
    """Housekeeping."""


@system.command("prune")
@click.pass_context
def system_prune(ctx: click.Context) -> None:
    """Remove exited containers and leftovers; let the plugins collect garbage."""
    from netkit.runtime import containers

    rt = root(ctx)
    for name in call(lambda: containers.prune(rt)):
        click.echo(f"removed {name}")


COMMANDS = [run, ps, inspect, stop, rm, exec_, logs, port, rename, system]
