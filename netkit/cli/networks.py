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
@click.option("--internal", is_flag=True, help="Nothing forwarded in or out (no masquerade, no default route); no -p.")
@click.option("--driver", "-d", default="bridge", type=click.Choice(["bridge"]))
@click.option("-o", "--opt", "opts", multiple=True, help="isolate=true|false, icc=true|false, mtu=N")
@click.option("--mtu", type=int, default=0, help="MTU of the bridge, the veths and the containers' interfaces")
@click.option("--disable-dns", is_flag=True, help="No name resolution on the network (podman's flag).")
@click.argument("name")
@click.pass_context
def network_create(ctx: click.Context, subnets: tuple[str, ...], gateways: tuple[str, ...], ipv6: bool,
                   internal: bool, driver: str, opts: tuple[str, ...], mtu: int, disable_dns: bool, name: str) -> None:
    """Create a bridge network."""
    from netkit.runtime import networks

    rt = root(ctx)
    options = dict(o.split("=", 1) if "=" in o else (o, "true") for o in opts)
    rt.prepare()
    call(lambda: networks.create(rt, name, list(subnets), list(gateways), internal, options, ipv6=ipv6, mtu=mtu,
                                 dns=not disable_dns))
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
    """Show a network's config and the containers on it with their addresses."""
    from netkit.runtime import inspect, networks

    rt = root(ctx)
    conf = call(lambda: networks.load(rt, name))
    users = call(lambda: inspect.network_containers(rt, name))
    click.echo(json.dumps({"Name": name, "Config": conf, "Containers": users}, indent=2))


@network.command("connect")
@click.option("--ip", default="", help="Fixed address on the network.")
@click.option("--alias", "aliases", multiple=True, help="A name of the container on this network.")
@click.argument("name")
@click.argument("container")
@click.pass_context
def network_connect(ctx: click.Context, ip: str, aliases: tuple[str, ...], name: str, container: str) -> None:
    """Connect a container to a network (its next interface, ethN)."""
    from netkit.runtime import endpoints

    rt = root(ctx)
    call(lambda: endpoints.connect(rt, container, name, ip, list(aliases)))


@network.command("disconnect")
@click.argument("name")
@click.argument("container")
@click.pass_context
def network_disconnect(ctx: click.Context, name: str, container: str) -> None:
    """Disconnect a container from a network."""
    from netkit.runtime import endpoints

    rt = root(ctx)
    call(lambda: endpoints.disconnect(rt, container, name))


@network.command("rm")
@click.argument("name")
@click.pass_context
def network_rm(ctx: click.Context, name: str) -> None:
    """Remove a network (refused while containers use it)."""
    from netkit.runtime import containers

    rt = root(ctx)
    call(lambda: containers.remove_network(rt, name))
    click.echo(name)


COMMANDS = [network]
