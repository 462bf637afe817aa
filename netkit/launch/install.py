"""`netkit cni install`: plugin executables (see executable), the agent's systemd units, the default
network config."""

from __future__ import annotations

import ipaddress
import json
import os
import sys
from dataclasses import dataclass, field

from netkit import fileio, plugins
from netkit.agent import protocol
from netkit.ipam.pool import DEFAULT_BRIDGE, DOCKER_SUBNETS, choose_subnet
from netkit.launch import executable, native
from netkit.net.routes import host_routes

DEFAULT_BIN_DIR = "/opt/cni/bin"
DEFAULT_CONF_DIR = "/etc/cni/net.d"
DEFAULT_NETWORK = "netkit"
CONFLIST_NAME = "netkit.conflist"
# containerd's CRI plugin (go-cni) runs plugin type `loopback` for every pod's lo, from its bin dir,
# whatever the conflist says: a node without the reference plugins gets netkit's under that name.
LOOPBACK_ALIAS = "loopback"
LOOPBACK_TARGET = "netkit-loopback"  # the alias is this relative symlink: netkit's, whatever its install


class NoNativeLauncher(OSError):
    """A C launcher was required (``require_native``) and could not be built; nothing was written."""


@dataclass
class InstallReport:
    """What an install wrote and decided."""

    executables: list[str] = field(default_factory=list)
    conflist: str = ""
    conflist_written: bool = False
    subnet: str = ""
    loopback: str = ""  # the `loopback` alias written ("" when none was)
    notes: list[str] = field(default_factory=list)


def default_conflist(subnet: ipaddress.IPv4Network) -> dict[str, object]:
    """The default network: Docker's docker0 layout through netkit's plugins."""
    gateway = str(subnet.network_address + 1)
    return {
        "cniVersion": "1.0.0",
        "name": DEFAULT_NETWORK,
        "plugins": [
            {
                "type": "netkit-bridge",
                "bridge": DEFAULT_BRIDGE,
                "isGateway": True,
                "isDefaultGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                # The bridge publishes ports itself: one exec per container instead of two.
                "capabilities": {"portMappings": True},
                "ipam": {
                    "type": "netkit-ipam",
                    "ranges": [[{"subnet": str(subnet), "gateway": gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            }
        ],
    }


UNIT_DIR = "/etc/systemd/system"
UNIT_NAME = "netkit-agent.service"
SOCKET_UNIT_NAME = "netkit-agent.socket"
UNIT_MARK = "# Written by `netkit cni install`"  # how uninstall knows a unit is netkit's
SERVICE_TEMPLATE = """[Unit]
Description=netkit agent: warm CNI plugin requests over {socket}
Documentation=file://{readme}
Requires={socket_unit}
After={socket_unit} local-fs.target
{mark}; `netkit cni uninstall` removes it.

[Service]
# Serves the socket systemd listens on (LISTEN_FDS); SIGTERM stops it after the requests in flight.
ExecStart={python} -m netkit agent --socket {socket}
Restart=on-failure
# Stop or restart only the agent itself: a plugin it runs starts the DNS resolver daemon
# (netkit.dns), which lands in this unit's cgroup and must outlive the agent (names keep resolving
# through an agent restart or upgrade); the default KillMode=control-group would kill it too.
KillMode=process
# The plugins run in-process whenever the agent is not there.

[Install]
WantedBy=multi-user.target
Also={socket_unit}
"""
SOCKET_TEMPLATE = """[Unit]
Description=netkit agent socket: {socket}
Documentation=file://{readme}
{mark}; `netkit cni uninstall` removes it.

[Socket]
ListenStream={socket}
SocketMode=0600
DirectoryMode=0755

[Install]
WantedBy=sockets.target
"""


def systemd_runs() -> bool:
    """True where systemd is PID 1 (its own test: /run/systemd/system exists)."""
    return os.path.isdir("/run/systemd/system")


def agent_units(python: str | None = None, socket: str = protocol.DEFAULT_SOCKET) -> dict[str, str]:
    """The systemd units of a socket-activated agent run by this installation's interpreter: name -> text."""
    import netkit

    readme = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(netkit.__file__))), "README.md")
    fields = {"python": python or sys.executable, "socket": socket, "readme": readme, "mark": UNIT_MARK,
              "socket_unit": SOCKET_UNIT_NAME}
    return {UNIT_NAME: SERVICE_TEMPLATE.format(**fields), SOCKET_UNIT_NAME: SOCKET_TEMPLATE.format(**fields)}


def install_agent_units(unit_dir: str = UNIT_DIR, socket: str = protocol.DEFAULT_SOCKET) -> list[str]:
    """Write the agent's systemd units into ``unit_dir``; their paths.  Enabling them is systemd's
    job (``enable_agent_units``)."""
    fileio.ensure_dir(unit_dir)
    out = []
    for name, text in agent_units(socket=socket).items():
        path = os.path.join(unit_dir, name)
        fileio.write_atomic(path, text.encode())
        out.append(path)
    return out


def systemctl(*args: str) -> None:
    """``systemctl ARGS`` (an argument list, no shell); OSError with its message when it fails."""
    import subprocess  # here: a plugin exec imports this package, never this function

    proc = subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise OSError(f"systemctl {' '.join(args)}: {(proc.stderr or proc.stdout).strip()}")


def enable_agent_units() -> None:
    """daemon-reload, then enable and start the socket and the service (the service at once, so the
    first ADD after an install or a boot finds it warm; the socket restarts it on the next request
    after a stop)."""
    systemctl("daemon-reload")
    systemctl("enable", "--now", SOCKET_UNIT_NAME)
    systemctl("enable", UNIT_NAME)
    systemctl("restart", UNIT_NAME)  # an upgrade: `enable --now` leaves a running old one running


def is_own_unit(path: str) -> bool:
    """True when the unit file at ``path`` was written by `netkit cni install`."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return UNIT_MARK in f.read(4096)
    except OSError:
        return False


def remove_agent_units(unit_dir: str = UNIT_DIR, systemd: bool | None = None) -> list[str]:
    """Disable and stop netkit's agent units where systemd runs, then remove their files; the paths removed."""
    paths = [os.path.join(unit_dir, n) for n in (UNIT_NAME, SOCKET_UNIT_NAME)]
    ours = [p for p in paths if is_own_unit(p)]
    if ours and (systemd_runs() if systemd is None else systemd):
        systemctl("disable", "--now", *(os.path.basename(p) for p in ours))
    for path in ours:
        os.unlink(path)
    if ours and (systemd_runs() if systemd is None else systemd):
        systemctl("daemon-reload")
    return ours


def install_plugins(bin_dir: str, python: str | None = None, spawn: bool = True,
                    notes: list[str] | None = None, require_native: bool = False) -> list[str]:
    """Write every plugin executable into ``bin_dir``; return their paths.

    ``spawn`` (the default install): C launchers (launch/native.py) that hand a request to the agent
    and exec the Python launchers, written to ``<bin_dir>/.netkit/`` first, for everything else; with
    no working C compiler, the Python launchers themselves (one line in ``notes`` says why).
    ``spawn=False`` (``--no-agent``): Python launchers that never start an agent (a C launcher
    would only add an exec in front of them).
    ``require_native``: NoNativeLauncher instead of Python launchers when no C launcher is built
    (a Kubernetes node: the host cannot run a Python launcher whose interpreter is in an image).
    """
    if require_native and not spawn:
        raise ValueError("a C launcher hands requests to the agent: it cannot be required without one")
    python = python or sys.executable
    paths = executable.import_paths()
    fileio.ensure_dir(bin_dir)
    # Absolute: a C launcher execs the Python launcher by the path compiled into it, from any cwd.
    targets = {name: os.path.join(os.path.abspath(bin_dir), name) for name in plugins.REGISTRY}
    if spawn:
        def fallbacks() -> None:
            fileio.ensure_dir(os.path.join(bin_dir, native.FALLBACK_DIR))
            for name, target in targets.items():
                _write_launcher(native.fallback_path(target), executable.render(name, python, paths, spawn))

        why = native.build(targets, python, protocol.DEFAULT_SOCKET, fallbacks)
        if not why:
            return list(targets.values())
        if require_native:
            raise NoNativeLauncher(f"no C launcher could be built, nothing installed or replaced in {bin_dir}: {why}")
        if notes is not None:
            notes.append(f"Python launchers (no C launcher: {why})")
    for name, target in targets.items():
        _write_launcher(target, executable.render(name, python, paths, spawn))
    return list(targets.values())


def _write_launcher(path: str, text: str) -> None:
    fileio.write_atomic(path, text.encode(), mode=0o755)
    os.chmod(path, 0o755)  # write_atomic's mode is less the umask; a launcher must be executable


def is_own_loopback(path: str) -> bool:
    """True when ``path`` is the ``loopback`` alias install_loopback writes."""
    try:
        return os.path.islink(path) and os.readlink(path) == LOOPBACK_TARGET
    except OSError:
        return False


def install_loopback(bin_dir: str, notes: list[str]) -> str:
    """``loopback`` in ``bin_dir`` as netkit-loopback, unless one is there (the reference plugin's,
    or ours already): its path when written, else "" (a foreign one kept is said in ``notes``)."""
    path = os.path.join(bin_dir, LOOPBACK_ALIAS)
    if is_own_loopback(path):
        return path
    try:
        os.symlink(LOOPBACK_TARGET, path)  # never over a file: the node's own loopback plugin is kept
    except FileExistsError:
        notes.append(f"kept {path} (not netkit's)")
        return ""
    return path


def plugins_current(bin_dir: str) -> bool:
    """True when ``bin_dir`` holds every plugin executable as install_plugins writes them now (C
    launchers, or the Python launchers an install without a compiler writes)."""
    from netkit.launch import invoker

    return all(invoker.is_own_launcher(os.path.join(bin_dir, name)) for name in plugins.REGISTRY)


def install(bin_dir: str = DEFAULT_BIN_DIR, conf_dir: str = DEFAULT_CONF_DIR, python: str | None = None,
            force_conflist: bool = False, spawn: bool = True, conflist: bool = True,
            require_native: bool = False, loopback: bool = False) -> InstallReport:
    """Write every plugin executable into ``bin_dir`` and the default conflist into ``conf_dir``.

    An existing conflist is kept (it may have been edited) unless ``force_conflist``; none is written
    without ``conflist`` (a Kubernetes node's: `netkit node` writes it once the node's pod subnets
    are known, and a guessed subnet before that would give pods wrong addresses).  ``spawn``,
    ``require_native``: see install_plugins.  ``loopback``: see install_loopback.  Files only: the
    agent's side (units, an old agent) is the CLI's (cli/cni.py).
    """
    report = InstallReport()
    report.executables = install_plugins(bin_dir, python, spawn, report.notes, require_native)
    if loopback:
        report.loopback = install_loopback(bin_dir, report.notes)
    if not conflist:
        return report
    fileio.ensure_dir(conf_dir)
    report.conflist = os.path.join(conf_dir, CONFLIST_NAME)
    if os.path.exists(report.conflist) and not force_conflist:
        report.notes.append(f"kept existing {report.conflist}")
        return report
    subnet = choose_subnet(host_routes())
    report.subnet = str(subnet)
    if subnet != DOCKER_SUBNETS[0]:
        report.notes.append(f"{DOCKER_SUBNETS[0]} overlaps a route on this host; using {subnet}")
    body = json.dumps(default_conflist(subnet), indent=2) + "\n"
    fileio.write_atomic(report.conflist, body.encode())
    report.conflist_written = True
    return report
