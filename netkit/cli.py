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
@click.option("--root", envvar="NETKIT_ROOT", default=None, metavar="DIR",
              help="Where this netkit host keeps its state (default /var/lib/netkit).")
@click.pass_context
def main(ctx: click.Context, root: str | None) -> None:
    """netkit: container networking (CNI plugins, runtime, labs)."""
    from netkit.launch import invoker

    invoker.use()  # netkit's own plugins, wherever a command runs one, answer without an exec
    ctx.obj = root


def _root(ctx: click.Context) -> Any:
    """The runtime root; the runtime needs root privileges (namespaces, mounts)."""
    from netkit.runtime.root import Root

    if os.geteuid() != 0:
        _fail(errors.CNIError(errors.INTERNAL, "netkit must run as root"))
    return Root(ctx.obj)


def _after_dashes(command: tuple[str, ...]) -> list[str]:
    """CMD without the ``--`` that separates it (click keeps it once a positional came first)."""
    return list(command[1:] if command[:1] == ("--",) else command)


@main.command(context_settings={"allow_interspersed_args": False})
@click.option("--net", "--network", "network", default="bridge", show_default=True,
              help="bridge, a network name, host, none or container:NAME")
@click.option("-p", "--publish", multiple=True, help="[IP:][HOSTPORT:]CONTAINERPORT[/PROTO], ranges allowed")
@click.option("--name", default="")
@click.option("-d", "--detach", is_flag=True, help="Run in the background; output goes to `netkit logs`.")
@click.option("--rm", "auto_remove", is_flag=True, help="Remove the container when it exits.")
@click.option("--ip", default="", help="Fixed address on a user-defined network.")
@click.option("--hostname", default="")
@click.option("-e", "--env", multiple=True, help="KEY=VALUE (or KEY: taken from this environment)")
@click.option("--dns", multiple=True, help="Nameserver for the container's /etc/resolv.conf")
@click.option("-l", "--label", "labels", multiple=True, help="KEY=VALUE metadata shown by inspect")
@click.argument("command", nargs=-1, required=True)
@click.pass_context
def run(ctx: click.Context, command: tuple[str, ...], labels: tuple[str, ...], **kw: Any) -> None:
    """Run CMD in a new container: netkit run [OPTIONS] -- CMD [ARGS...]."""
    from netkit.runtime import containers, ports

    root = _root(ctx)
    kw["labels"] = dict(item.partition("=")[::2] for item in labels)
    opts = containers.RunOptions(command=_after_dashes(command), **{k: list(v) if isinstance(v, tuple) else v
                                                            for k, v in kw.items()})
    rec, code = _run(lambda: containers.run(root, opts))
    if opts.detach:
        for m in rec.get("ports", []):
            click.echo(f"published {ports.describe(m)}", err=True)
        click.echo(rec["id"])
    sys.exit(code)


@main.command()
@click.option("-a", "--all", "show_all", is_flag=True, help="Show exited containers too.")
@click.pass_context
def ps(ctx: click.Context, show_all: bool) -> None:
    """List containers."""
    import time

    from netkit.runtime import ports, state

    root = _root(ctx)
    rows = [("CONTAINER ID", "COMMAND", "STATUS", "PORTS", "NAMES")]
    for rec in _run(lambda: state.all_records(root)):
        running = state.alive(rec)
        if not running and not show_all:
            continue
        since = time.time() - (rec.get("started_at") or rec["created"])
        status = f"Up {int(since)} seconds" if running else f"Exited ({rec.get('exit_code')})"
        rows.append((rec["id"][:12], " ".join(rec["command"])[:30], status,
                     ", ".join(ports.describe(m) for m in rec.get("ports", [])), rec["name"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


@main.command()
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def inspect(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Show containers as JSON."""
    from netkit.runtime import containers

    root = _root(ctx)
    click.echo(json.dumps([_run(lambda n=n: containers.inspect(root, n)) for n in names], indent=2))


@main.command()
@click.option("-t", "--time", "timeout", default=10, show_default=True, help="Seconds to wait before SIGKILL.")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def stop(ctx: click.Context, timeout: int, names: tuple[str, ...]) -> None:
    """Stop containers: SIGTERM, then SIGKILL after the timeout."""
    from netkit.runtime import containers

    root = _root(ctx)
    for n in names:
        _run(lambda n=n: containers.stop(root, n, timeout))
        click.echo(n)


@main.command()
@click.option("-f", "--force", is_flag=True, help="Kill a running container first.")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, force: bool, names: tuple[str, ...]) -> None:
    """Remove containers and release their network."""
    from netkit.runtime import containers

    root = _root(ctx)
    for n in names:
        _run(lambda n=n: containers.remove(root, n, force))
        click.echo(n)


@main.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-e", "--env", multiple=True)
@click.argument("name")
@click.argument("command", nargs=-1, required=True)
@click.pass_context
def exec_(ctx: click.Context, env: tuple[str, ...], name: str, command: tuple[str, ...]) -> None:
    """Run a command in a running container: netkit exec NAME -- CMD [ARGS...]."""
    from netkit.runtime import containers

    root = _root(ctx)
    sys.exit(_run(lambda: containers.exec_in(root, name, _after_dashes(command), list(env))))


@main.command()
@click.argument("name")
@click.pass_context
def logs(ctx: click.Context, name: str) -> None:
    """Print a container's output."""
    from netkit.runtime import containers

    root = _root(ctx)
    sys.stdout.buffer.write(_run(lambda: containers.logs(root, name)))


@main.command()
@click.argument("name")
@click.pass_context
def port(ctx: click.Context, name: str) -> None:
    """List a container's published ports."""
    from netkit.runtime import ports, state

    root = _root(ctx)
    for m in _run(lambda: state.find(root, name)).get("ports", []):
        click.echo(ports.describe(m))


@main.group()
def network() -> None:
    """Manage networks."""


@network.command("create")
@click.option("--subnet", default=None)
@click.option("--gateway", default=None)
@click.option("--internal", is_flag=True, help="No outbound masquerade and no default route.")
@click.option("--driver", "-d", default="bridge", type=click.Choice(["bridge"]))
@click.option("-o", "--opt", "opts", multiple=True, help="isolate=true|false, icc=true|false")
@click.argument("name")
@click.pass_context
def network_create(ctx: click.Context, subnet: str | None, gateway: str | None, internal: bool, driver: str,
                   opts: tuple[str, ...], name: str) -> None:
    """Create a bridge network."""
    from netkit.runtime import networks

    root = _root(ctx)
    options = dict(o.split("=", 1) if "=" in o else (o, "true") for o in opts)
    root.prepare()
    _run(lambda: networks.create(root, name, subnet, gateway, internal, options))
    click.echo(name)


@network.command("ls")
@click.pass_context
def network_ls(ctx: click.Context) -> None:
    """List networks."""
    from netkit.runtime import networks

    root = _root(ctx)
    _run(lambda: networks.ensure_default(root) if os.path.isdir(root.networks) else None)
    click.echo(f"{'NAME':20} {'DRIVER':8} {'BRIDGE':16} SUBNET")
    for n in _run(lambda: networks.listing(root)):
        click.echo(f"{n['name']:20} {n['driver']:8} {n['bridge']:16} {n['subnet']}".rstrip())


@network.command("inspect")
@click.argument("name")
@click.pass_context
def network_inspect(ctx: click.Context, name: str) -> None:
    """Show a network's config and the containers on it."""
    from netkit.runtime import networks, state

    root = _root(ctx)
    conf = _run(lambda: networks.load(root, name))
    users = [r["name"] for r in state.all_records(root) if r.get("network") == name]
    click.echo(json.dumps({"Name": name, "Config": conf, "Containers": users}, indent=2))


@network.command("rm")
@click.argument("name")
@click.pass_context
def network_rm(ctx: click.Context, name: str) -> None:
    """Remove a network (refused while containers use it)."""
    from netkit.runtime import networks, state

    root = _root(ctx)
    users = [r["name"] for r in state.all_records(root) if r.get("network") == name and r["net_kind"] == "bridge"]
    _run(lambda: networks.remove(root, name, users))
    click.echo(name)


@main.command()
@click.option("--socket", "path", envvar="NETKIT_AGENT_SOCKET", default="/run/netkit/agent.sock", show_default=True)
def agent(path: str) -> None:
    """Serve plugin requests warm over a unix socket (the plugin executables use it when it runs)."""
    from netkit.agent import server
    from netkit.launch import invoker

    if os.geteuid() != 0:
        _fail(errors.CNIError(errors.INTERNAL, "netkit must run as root"))
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwinds serve(): the socket file goes
    click.echo(f"netkit agent listening on {path}", err=True)
    try:
        server.serve(invoker.Invoker(), path)
    except KeyboardInterrupt:
        pass


@main.group()
def system() -> None:
    """Housekeeping."""


@system.command("prune")
@click.pass_context
def system_prune(ctx: click.Context) -> None:
    """Remove exited containers and leftovers; let the plugins collect garbage."""
    from netkit.runtime import containers

    root = _root(ctx)
    for name in _run(lambda: containers.prune(root)):
        click.echo(f"removed {name}")


@main.group()
def cni() -> None:
    """Install netkit's CNI plugins and drive networks like cnitool."""


@cni.command("install")
@click.option("--bin-dir", default="/opt/cni/bin", show_default=True, help="Where plugin executables go.")
@click.option("--conf-dir", default="/etc/cni/net.d", show_default=True, help="Where netkit.conflist goes.")
@click.option("--force-conflist", is_flag=True, help="Rewrite netkit.conflist even if it exists.")
@click.option("--agent", "with_agent", is_flag=True, help="Also install the netkit-agent systemd unit.")
@click.option("--unit-dir", default="/etc/systemd/system", show_default=True)
def cni_install(bin_dir: str, conf_dir: str, force_conflist: bool, with_agent: bool, unit_dir: str) -> None:
    """Write the plugin executables and the default network config."""
    from netkit.launch import install

    report = _run(lambda: install.install(bin_dir, conf_dir, force_conflist=force_conflist))
    if with_agent:
        unit = _run(lambda: install.install_agent_unit(unit_dir))
        click.echo(f"wrote {unit}: start it with `systemctl daemon-reload && systemctl enable --now "
                   f"{install.UNIT_NAME}` (or run `netkit agent` yourself)")
    for exe in report.executables:
        click.echo(f"installed {exe}")
    for note in report.notes:
        click.echo(note)
    if report.conflist_written:
        click.echo(f"wrote {report.conflist} (network {install.DEFAULT_NETWORK}, subnet {report.subnet})")


def _netns_path(netns: str) -> str:
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


def _options(options: list[Callable[..., Any]]) -> Callable[..., Any]:
    def apply(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            fn = option(fn)
        return fn
    return apply


def _chain_call(command: str, network: str, conf_dir: str, cni_path: str, cache_dir: str, netns: str = "",
                ifname: str = "eth0", container_id: str | None = None, cni_args: str = "", cap_args: str = "") -> Any:
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

    return _run(go)


@cni.command("add")
@_options(_NETWORK_OPTIONS + _ATTACHMENT_OPTIONS)
def cni_add(**kw: Any) -> None:
    """Attach NETNS (a path or a name under /run/netns) to NETWORK; print the result."""
    click.echo(json.dumps(_chain_call("add", **kw), indent=2))


@cni.command("del")
@_options(_NETWORK_OPTIONS + _ATTACHMENT_OPTIONS)
def cni_del(**kw: Any) -> None:
    """Detach NETNS from NETWORK (DEL in reverse order, with the cached result)."""
    _chain_call("delete", **kw)


@cni.command("check")
@_options(_NETWORK_OPTIONS + _ATTACHMENT_OPTIONS)
def cni_check(**kw: Any) -> None:
    """Check NETNS's attachment to NETWORK."""
    _chain_call("check", **kw)
    click.echo("ok")


@cni.command("gc")
@_options(_NETWORK_OPTIONS)
def cni_gc(**kw: Any) -> None:
    """GC NETWORK: everything not in the result cache may be collected (spec 1.1.0)."""
    _chain_call("gc", **kw)


@cni.command("status")
@_options(_NETWORK_OPTIONS)
def cni_status(**kw: Any) -> None:
    """Ask NETWORK's plugins whether they are ready (spec 1.1.0)."""
    _chain_call("status", **kw)
    click.echo("ready")


def _register_subgroups() -> None:
    # Imported after the helpers above exist: netkit.lab.commands uses them.
    from netkit.lab.commands import lab

    main.add_command(lab)


_register_subgroups()

if __name__ == "__main__":
    main()
