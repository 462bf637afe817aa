"""`netkit cni install`: plugin executables (see executable), the agent's systemd unit, the default
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
from netkit.launch import executable
from netkit.net.routes import host_routes

DEFAULT_BIN_DIR = "/opt/cni/bin"
DEFAULT_CONF_DIR = "/etc/cni/net.d"
DEFAULT_NETWORK = "netkit"
CONFLIST_NAME = "netkit.conflist"


@dataclass
class InstallReport:
    """What an install wrote and decided."""

    executables: list[str] = field(default_factory=list)
    conflist: str = ""
    conflist_written: bool = False
    subnet: str = ""
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
UNIT_TEMPLATE = """[Unit]
Description=netkit agent: warm CNI plugin requests over {socket}
Documentation=file://{readme}
After=local-fs.target

[Service]
ExecStart={python} -m netkit agent --socket {socket}
Restart=on-failure
# The plugins fall back to running in-process whenever the agent is not there.

[Install]
WantedBy=multi-user.target
"""


def agent_unit(python: str | None = None, socket: str = protocol.DEFAULT_SOCKET) -> str:
    """The systemd unit that runs `netkit agent` with this installation's interpreter."""
    import netkit

    readme = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(netkit.__file__))), "README.md")
    return UNIT_TEMPLATE.format(python=python or sys.executable, socket=socket, readme=readme)


def install_agent_unit(unit_dir: str = UNIT_DIR) -> str:
    """Write the agent's systemd unit; its path.  Enabling it is systemd's job (`systemctl enable --now`)."""
    fileio.ensure_dir(unit_dir)
    path = os.path.join(unit_dir, UNIT_NAME)
    fileio.write_atomic(path, agent_unit().encode())
    return path


def install_plugins(bin_dir: str, python: str | None = None) -> list[str]:
    """Write every plugin executable into ``bin_dir``; return their paths."""
    python = python or sys.executable
    paths = executable.import_paths()
    fileio.ensure_dir(bin_dir)
    out = []
    for name in plugins.REGISTRY:
        target = os.path.join(bin_dir, name)
        fileio.write_atomic(target, executable.render(name, python, paths).encode(), mode=0o755)
        os.chmod(target, 0o755)
        out.append(target)
    return out


def plugins_current(bin_dir: str) -> bool:
    """True when ``bin_dir`` holds every plugin executable exactly as install_plugins writes it now."""
    from netkit.launch import invoker

    return all(invoker.is_own_launcher(os.path.join(bin_dir, name)) for name in plugins.REGISTRY)


def install(bin_dir: str = DEFAULT_BIN_DIR, conf_dir: str = DEFAULT_CONF_DIR, python: str | None = None,
            force_conflist: bool = False) -> InstallReport:
    """Write every plugin executable into ``bin_dir`` and the default conflist into ``conf_dir``.

    An existing conflist is kept (it may have been edited) unless ``force_conflist``.
    """
    report = InstallReport()
    report.executables = install_plugins(bin_dir, python)
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
