"""``netkit lab up|down|test|inspect|exec|graph|vagrantfile|validate``: the click layer over netkit.lab
(parse options, print, exit codes)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from netkit.cli.shared import after_dashes, call, fail, options, require_root, root

if TYPE_CHECKING:
    from netkit.lab.local import LocalLab

# FILE, --name, --state-dir: every verb that acts on a lab built on this machine.
_lab_options = options([
    click.argument("file", type=click.Path(dir_okay=False)),
    click.option("--name", default="", help="Lab name (default: the scenario's name:), to run a file twice."),
    click.option("--state-dir", default="", metavar="DIR",
                 help="Where the local backend keeps lab state (default /run/netkit/lab)."),
])


def _local(file: str, name: str, state_dir: str) -> LocalLab:
    """The lab FILE describes on this machine (not necessarily up)."""
    from netkit.lab import local, scenario

    require_root()  # namespaces need root: fail early with one line
    sc = call(lambda: scenario.load(file))
    return local.LocalLab(sc, name, state_dir)


def _built(file: str, name: str, state_dir: str) -> LocalLab:
    """The lab FILE describes, refused with one line unless it is up."""
    lab_ = _local(file, name, state_dir)
    call(lab_.require_built)
    return lab_


@click.group()
def lab() -> None:
    """Network labs: a topology file built from namespaces here, or from Vagrant boxes."""


@lab.command()
@_lab_options
@click.option("--host", "host", default="", help="Build only this host's part, here (what each Vagrant box runs).")
@click.option("--fabric-only", is_flag=True, help="Make the hosts and links, but no host's networks or containers.")
@click.pass_context
def up(ctx: click.Context, file: str, name: str, state_dir: str, host: str, fabric_only: bool) -> None:
    """Build the lab, or converge it to FILE when it is already up."""
    if host:
        from netkit.lab import provision, scenario

        rt = root(ctx)
        sc = call(lambda: scenario.load(file))
        if name:
            sc.name = name
        for line in call(lambda: provision.provision(sc, host, rt)):
            click.echo(line)
        return
    lab_ = _local(file, name, state_dir)
    call(lambda: lab_.up(fabric_only=fabric_only, say=click.echo))
    click.echo(f"{lab_.name}: up")


@lab.command()
@_lab_options
def down(file: str, name: str, state_dir: str) -> None:
    """Remove every namespace, link, rule, process and state of the lab (half-built ones too)."""
    lab_ = _local(file, name, state_dir)
    call(lab_.down)
    click.echo(f"{lab_.name}: down")


@lab.command("test")
@_lab_options
@click.option("--json", "as_json", is_flag=True)
def test_(file: str, name: str, state_dir: str, as_json: bool) -> None:
    """Run the scenario's checks; exit 0 only when every one passes."""
    from netkit.lab import checks

    lab_ = _built(file, name, state_dir)
    verdicts = checks.run_all(lab_.sc.checks, lab_)
    if as_json:
        click.echo(json.dumps([{"line": v.check.line, "from": v.check.source, "to": v.check.to,
                                "proto": v.check.proto, "expect": v.check.expect, "seen": v.observed,
                                "passed": v.passed, "detail": v.detail} for v in verdicts], indent=2))
    else:
        click.echo(checks.render(verdicts))
    sys.exit(0 if verdicts and all(v.passed for v in verdicts) else 1)


@lab.command()
@_lab_options
@click.option("--json", "as_json", is_flag=True)
def inspect(file: str, name: str, state_dir: str, as_json: bool) -> None:
    """Hosts, links, addresses, routes, containers and published ports."""
    lab_ = _built(file, name, state_dir)
    view = call(lab_.hosts_view)
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return
    for host, h in view.items():
        links = ", ".join(f"{link} {addr}" for link, addr in h["links"].items()) or "no links"
        click.echo(f"{host}  ({links})" + "".join(f"\n  route {r}" for r in h["routes"]))
        for c in h["containers"]:
            extra = " ".join(c["addresses"] + c["ports"])
            click.echo(f"  {c['name']:<12} {c['network']:<14} {c['state']:<8} {extra}".rstrip())


@lab.command("exec", context_settings={"allow_interspersed_args": False})
@_lab_options
@click.argument("target")
@click.argument("command", nargs=-1, required=True)
def exec_(file: str, name: str, state_dir: str, target: str, command: tuple[str, ...]) -> None:
    """Run CMD on HOST or in HOST/CONTAINER: netkit lab exec FILE TARGET -- CMD."""
    lab_ = _local(file, name, state_dir)
    argv = after_dashes(command)
    if not argv:
        fail(ValueError("no command given"))
    sys.exit(call(lambda: lab_.exec_argv(target, argv)))


@lab.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot", "svg", "png"]), default="mermaid",
              show_default=True, help="svg and png need Graphviz's dot")
@click.option("-o", "--output", default="-", help="File to write (default stdout).")
def graph(file: str, fmt: str, output: str) -> None:
    """Draw the topology."""
    from netkit.lab import graph as draw
    from netkit.lab import scenario

    sc = call(lambda: scenario.load(file))
    data = call(lambda: draw.render(sc, fmt))
    if output == "-":
        sys.stdout.buffer.write(data)
    else:
        with open(output, "wb") as f:
            f.write(data)


@lab.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--box", default="debian/bookworm64", show_default=True)
@click.option("--name", default="", help="Lab name (default: the scenario's name:).")
def vagrantfile(file: str, box: str, name: str) -> None:
    """Print a multi-machine Vagrantfile for FILE: one box per host, one private network per link."""
    from netkit.lab import scenario, vagrant

    sc = call(lambda: scenario.load(file))
    click.echo(vagrant.render(sc, box, name), nl=False)


@lab.command()
@click.argument("file", type=click.Path(dir_okay=False))
def validate(file: str) -> None:
    """Check FILE and print what it describes."""
    from netkit.lab import scenario

    sc = call(lambda: scenario.load(file))
    click.echo(f"{sc.name}: {len(sc.hosts)} hosts, {len(sc.links)} links, "
               f"{sum(len(h.containers) for h in sc.hosts.values())} containers, {len(sc.checks)} checks")


COMMANDS = [lab]
