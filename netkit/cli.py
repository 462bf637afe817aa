"""The ``netkit`` command: a thin click layer over the library that formats and reports errors."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable

import click

from netkit import __version__, errors

# Runtimes look here first; netkit's own installer writes here.
DEFAULT_PATH = ["/opt/cni/bin"]


def _fail(exc: Exception) -> None:
    click.echo(f"netkit: error: {exc}", err=True)
    sys.exit(1)


def _run(fn: Callable[[], Any]) -> Any:
    """Call ``fn``; known failures become one line on stderr and exit status 1."""
    try:
        return fn()
    except (errors.CNIError, OSError, ValueError) as exc:
        _fail(exc)


@click.group()
@click.version_option(__version__, prog_name="netkit")
def main() -> None:
    """netkit: container networking (CNI plugins, runtime, labs)."""


@main.group()
def cni() -> None:
    """Install netkit's CNI plugins and drive networks like cnitool."""


@cni.command("install")
@click.option("--bin-dir", default="/opt/cni/bin", show_default=True, help="Where plugin executables go.")
@click.option("--conf-dir", default="/etc/cni/net.d", show_default=True, help="Where netkit.conflist goes.")
@click.option("--force-conflist", is_flag=True, help="Rewrite netkit.conflist even if it exists.")
def cni_install(bin_dir: str, conf_dir: str, force_conflist: bool) -> None:
    """Write the plugin executables and the default network config."""
    from netkit import install

    report = _run(lambda: install.install(bin_dir, conf_dir, force_conflist=force_conflist))
    for exe in report.executables:
        click.echo(f"installed {exe}")
    for note in report.notes:
        click.echo(note)
    if report.conflist_written:
        click.echo(f"wrote {report.conflist} (network {install.DEFAULT_NETWORK}, subnet {report.subnet})")


def _netns_path(netns: str) -> str:
    return netns if "/" in netns else os.path.join("/run/netns", netns)


def _attachment_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        click.argument("network"),
        click.argument("netns"),
        click.option("--ifname", default="eth0", show_default=True),
        click.option("--container-id", default=None, help="Default: derived from the netns path."),
        click.option("--conf-dir", default="/etc/cni/net.d", show_default=True),
        click.option("--path", "cni_path", default=":".join(DEFAULT_PATH), show_default=True,
                     help="CNI_PATH: where plugin executables are looked up."),
        click.option("--cache-dir", default="/var/lib/netkit/cni-cache", show_default=True),
        click.option("--args", "cni_args", default="", help="CNI_ARGS, K=V;K=V."),
    ]):
        fn = option(fn)
    return fn


def _chain_call(command: str, network: str, netns: str, ifname: str, container_id: str | None, conf_dir: str,
                cni_path: str, cache_dir: str, cni_args: str) -> Any:
    from netkit.cni import chain
    from netkit.cni.request import parse_args

    def go() -> Any:
        path = _netns_path(netns)
        att = chain.Attachment(container_id or chain.container_id_for(path), path, ifname, parse_args(cni_args))
        conflist = chain.load(conf_dir, network)
        bins = [p for p in cni_path.split(":") if p]
        return getattr(chain, command)(conflist, att, bins, cache_dir)

    return _run(go)


@cni.command("add")
@_attachment_options
def cni_add(**kw: Any) -> None:
    """Attach NETNS (a path or a name under /run/netns) to NETWORK; print the result."""
    click.echo(json.dumps(_chain_call("add", **kw), indent=2))


@cni.command("del")
@_attachment_options
def cni_del(**kw: Any) -> None:
    """Detach NETNS from NETWORK."""
    _chain_call("delete", **kw)


@cni.command("check")
@_attachment_options
def cni_check(**kw: Any) -> None:
    """Check NETNS's attachment to NETWORK."""
    _chain_call("check", **kw)
    click.echo("ok")


if __name__ == "__main__":
    main()
