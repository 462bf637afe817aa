"""``netkit network create|ls|inspect|rm``: the runtime's bridge networks (netkit.runtime.networks)."""

from __future__ import annotations

import json
import os

import click

from netkit.cli.shared import call, root


@click.group()
def network() -> None:
    """Manage networks."""


@network.command("create")
@click.option("--subnet", "subnets", multiple=True, help="CIDR; once per family (IPv4, IPv6), as Docker.")
@click.option("--gateway", "gateways", multiple=True, help="The gateway of the subnet of its family.")
@click.option("--ipv6", is_flag=True, help="Dual stack: an IPv6 subnet too (a free unique local /64 unless given).")
@click.option("--internal", is_flag=True, help="No outbound masquerade and no default route.")
@click.option("--driver", "-d", default="bridge", type=click.Choice(["bridge"]))
@click.option("-o", "--opt", "opts", multiple=True, help="isolate=true|false, icc=true|false")
@click.argument("name")
@click.pass_context
def network_create(ctx: click.Context, subnets: tuple[str, ...], gateways: tuple[str, ...], ipv6: bool,
                   internal: bool, driver: str, opts: tuple[str, ...], name: str) -> None:
    """Create a bridge network."""
    from netkit.runtime import networks

    rt = root(ctx)
    options = dict(o.split("=", 1) if "=" in o else (o, "true") for o in opts)
    rt.prepare()
    call(lambda: networks.create(rt, name, list(subnets), list(gateways), internal, options, ipv6=ipv6))
    click.echo(name)


@network.command("ls")
@click.pass_context
def network_ls(ctx: click.Context) -> None:
    """List networks."""
    from netkit.runtime import networks

    rt = root(ctx)
    call(lambda: networks.ensure_default(rt) if os.path.isdir(rt.networks) else None)
    click.echo(f"{'NAME':20} {'DRIVER':8} {'BRIDGE':16} SUBNET")
    for n in call(lambda: networks.listing(rt)):
        click.echo(f"{n.name:20} {n.driver:8} {n.bridge:16} {n.subnet}".rstrip())


@network.command("inspect")
@click.argument("name")
@click.pass_context
def network_inspect(ctx: click.Context, name: str) -> None:
    """Show a network's config and the containers on it."""
    from netkit.runtime import containers, networks

    rt = root(ctx)
    conf = call(lambda: networks.load(rt, name))
    users = containers.users(rt, name)
    click.echo(json.dumps({"Name": name, "Config": conf, "Containers": users}, indent=2))


@network.command("rm")
@click.argument("name")
@click.pass_context
def network_rm(ctx: click.Context, name: str) -> None:
    """Remove a network (refused while containers use it)."""
    from netkit.runtime import containers, networks

    rt = root(ctx)
    users = containers.users(rt, name, bridge_only=True)
    call(lambda: networks.remove(rt, name, users))
    click.echo(name)


COMMANDS = [network]
