"""``netkit cni install|uninstall|add|del|check|gc|status``: install the plugins, and drive a network like cnitool
(netkit.launch.install, netkit.cni.chain)."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from netkit.cli.shared import agent_socket, call, fail, options

# Runtimes look here first; netkit's own installer writes here.
DEFAULT_PATH = ["/opt/cni/bin"]


@click.group()
def cni() -> None:
    """Install netkit's CNI plugins and drive networks like cnitool."""


@cni.command("install")
@click.option("--bin-dir", default="/opt/cni/bin", show_default=True, help="Where plugin executables go.")
@click.option("--conf-dir", default="/etc/cni/net.d", show_default=True, help="Where netkit.conflist goes.")
@click.option("--force-conflist", is_flag=True, help="Rewrite netkit.conflist even if it exists.")
@click.option("--no-conflist", is_flag=True,
              help="Write no netkit.conflist: another writes the node's (`netkit node`, from its pod subnets).")
@click.option("--no-agent", is_flag=True,
              help="Plugins always run in-process: launchers that never start an agent, no agent units, "
                   "a running agent stopped.")
@click.option("--agent", "with_agent", is_flag=True,
              help="Write the agent's systemd units even where systemd is not PID 1 (an image, a chroot); "
                   "they are enabled only where it is.")
@click.option("--require-native", is_flag=True,
              help="Fail (and write nothing) unless C launchers are built: where the host cannot run the "
                   "Python launchers (a Kubernetes node, whose netkit is in an image).")
@click.option("--loopback", is_flag=True,
              help="Also install netkit-loopback as `loopback` unless the bin dir has one (containerd's CRI "
                   "plugin runs it for every pod); `netkit cni uninstall` removes it.")
@click.option("--unit-dir", default="/etc/systemd/system", show_default=True)
@agent_socket()
def cni_install(bin_dir: str, conf_dir: str, force_conflist: bool, no_conflist: bool, no_agent: bool,
                with_agent: bool, require_native: bool, loopback: bool, unit_dir: str, socket: str) -> None:
    """Write the plugin executables and the default network config; leave a warm path.

    Where systemd is PID 1 a socket-activated agent (netkit-agent.socket and .service, enabled and
    started); elsewhere the first plugin exec that finds no agent starts one.  An agent of another
    netkit version (an upgrade) is stopped.
    """
    from netkit.agent import control
    from netkit.launch import install, uninstall

    if no_agent and with_agent:
        fail(ValueError("--agent and --no-agent contradict each other"))
    if no_conflist and force_conflist:
        fail(ValueError("--force-conflist and --no-conflist contradict each other"))
    if require_native and no_agent:
        fail(ValueError("--require-native and --no-agent contradict each other"))
    report = call(lambda: install.install(bin_dir, conf_dir, force_conflist=force_conflist, spawn=not no_agent,
                                          conflist=not no_conflist, require_native=require_native,
                                          loopback=loopback))
    for exe in report.executables:
        click.echo(f"installed {exe}")
    if report.loopback:
        click.echo(f"installed {report.loopback} -> {install.LOOPBACK_TARGET}")
    for note in report.notes:
        click.echo(note)
    if report.conflist_written:
        click.echo(f"wrote {report.conflist} (network {install.DEFAULT_NETWORK}, subnet {report.subnet})")
    if no_agent:
        for path in call(lambda: install.remove_agent_units(unit_dir)):
            click.echo(f"removed {path}")
        stopped = call(lambda: uninstall.stop_agent(socket))
        if stopped is not None:
            click.echo(f"stopped the netkit agent (pid {stopped}) on {socket}")
        click.echo("plugins run in-process (no agent)")
        return
    old = call(lambda: control.stop_other_version(socket))
    if old is not None:
        click.echo(f"stopped the netkit agent of version {old.version or '(older)'} (pid {old.pid}) on {socket}")
    if install.systemd_runs() or with_agent:
        for unit in call(lambda: install.install_agent_units(unit_dir, socket)):
            click.echo(f"wrote {unit}")
    if install.systemd_runs():
        # An agent a launcher started before the units existed would hold the lock the service needs.
        stopped = call(lambda: uninstall.stop_agent(socket))
        if stopped is not None:
            click.echo(f"stopped the netkit agent (pid {stopped}) on {socket}: systemd's takes over")
        call(install.enable_agent_units)
        click.echo(f"enabled and started {install.SOCKET_UNIT_NAME} and {install.UNIT_NAME}")
    elif with_agent:
        click.echo(f"systemd is not PID 1 here: enable them where it is (`systemctl enable --now "
                   f"{install.SOCKET_UNIT_NAME} {install.UNIT_NAME}`)")
    else:
        click.echo("the first plugin exec that finds no agent starts one (NETKIT_AGENT=off in a plugin's "
                   "environment, or `--no-agent`, keeps plugins in-process)")


@cni.command("uninstall")
@click.option("--bin-dir", default="/opt/cni/bin", show_default=True, help="Where the plugin executables are.")
@click.option("--conf-dir", default="/etc/cni/net.d", show_default=True, help="Where netkit.conflist is.")
@click.option("--unit-dir", default="/etc/systemd/system", show_default=True)
@agent_socket()
def cni_uninstall(bin_dir: str, conf_dir: str, unit_dir: str, socket: str) -> None:
    """Remove netkit's launchers, netkit.conflist (if it is netkit's), the agent's units, and stop the agent."""
    from netkit.launch import uninstall

    report = call(lambda: uninstall.uninstall(bin_dir, conf_dir, unit_dir, socket))
    if report.stopped is not None:
        click.echo(f"stopped the netkit agent (pid {report.stopped}) on {socket}")
    for path in report.removed:
        click.echo(f"removed {path}")
    for path in report.kept:
        click.echo(f"kept {path}")


def _netns_path(netns: str) -> str:
    """A bare name means /run/netns/NAME (where `ip netns add` puts it), as cnitool reads it."""
    return netns if "/" in netns else os.path.join("/run/netns", netns)


# cnitool's environment: NETCONFPATH, CNI_PATH, CNI_IFNAME, CNI_ARGS, CAP_ARGS.
_NETWORK_OPTIONS = [
    click.argument("network"),
    click.option("--conf-dir", envvar="NETCONFPATH", default="/etc/cni/net.d", show_default=True,
                 help="Where conflists are read ($NETCONFPATH); *.conflist before *.conf/*.json."),
    click.option("--path", "cni_path", envvar="CNI_PATH", default=":".join(DEFAULT_PATH), show_default=True,
                 help="Where plugin executables are looked up ($CNI_PATH)."),
    click.option("--cache-dir", default="/var/lib/cni", show_default=True,
                 help="Result cache, in libcni's layout (results/<net>-<id>-<ifname>)."),
]
_ATTACHMENT_OPTIONS = [
    click.argument("netns"),
    click.option("--ifname", envvar="CNI_IFNAME", default="eth0", show_default=True),
    click.option("--container-id", default=None, help="Default: derived from the netns path, as cnitool does."),
    click.option("--args", "cni_args", envvar="CNI_ARGS", default="", help="CNI_ARGS: K=V;K=V."),
    click.option("--cap-args", envvar="CAP_ARGS", default="", help="Capability arguments, JSON ($CAP_ARGS)."),
]


def _chain_call(command: str, network: str, conf_dir: str, cni_path: str, cache_dir: str, netns: str = "",
                ifname: str = "eth0", container_id: str | None = None, cni_args: str = "", cap_args: str = "") -> Any:
    """Run ``command`` (add, delete, check, gc, status) of netkit.cni.chain on NETWORK's conflist."""
    from netkit.cni import chain
    from netkit.cni.request import parse_args

    def go() -> Any:
        conflist = chain.load(conf_dir, network)
        bins = [p for p in cni_path.split(":") if p]
        if command == "gc":
            return chain.gc(conflist, chain.cached_attachments(cache_dir, network), bins)
        if command == "status":
            return chain.status(conflist, bins)
        path = _netns_path(netns)
        try:
            caps = json.loads(cap_args) if cap_args else {}
        except ValueError as exc:
            raise ValueError(f"CAP_ARGS is not JSON: {exc}") from None
        att = chain.Attachment(container_id or chain.container_id_for(path), path, ifname, parse_args(cni_args), caps)
        return getattr(chain, command)(conflist, att, bins, cache_dir)

    return call(go)


@cni.command("add")
@options(_NETWORK_OPTIONS + _ATTACHMENT_OPTIONS)
def cni_add(**kw: Any) -> None:
    """Attach NETNS (a path or a name under /run/netns) to NETWORK; print the result."""
    click.echo(json.dumps(_chain_call("add", **kw), indent=2))


@cni.command("del")
@options(_NETWORK_OPTIONS + _ATTACHMENT_OPTIONS)
def cni_del(**kw: Any) -> None:
    """Detach NETNS from NETWORK (DEL in reverse order, with the cached result)."""
    _chain_call("delete", **kw)


@cni.command("check")
@options(_NETWORK_OPTIONS + _ATTACHMENT_OPTIONS)
def cni_check(**kw: Any) -> None:
    """Check NETNS's attachment to NETWORK."""
    _chain_call("check", **kw)
    click.echo("ok")


@cni.command("gc")
@options(_NETWORK_OPTIONS)
def cni_gc(**kw: Any) -> None:
    """GC NETWORK: everything not in the result cache may be collected (spec 1.1.0)."""
    _chain_call("gc", **kw)


@cni.command("status")
@options(_NETWORK_OPTIONS)
def cni_status(**kw: Any) -> None:
    """Ask NETWORK's plugins whether they are ready (spec 1.1.0)."""
    _chain_call("status", **kw)
    click.echo("ready")


COMMANDS = [cni]
