"""`netkit cni uninstall`: take back what `netkit cni install` put on the host, and nothing else.

netkit's launchers (recognised by their text or a C launcher's marker, of this install or another
netkit's, and the Python launchers behind C ones), the ``loopback`` alias if it is netkit's,
``netkit.conflist`` if it is netkit's network, the agent's systemd units if netkit wrote them
(disabled and stopped where systemd runs), the agent on the socket (stopped gracefully) and the
files it keeps beside its socket.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from netkit import paths, plugins
from netkit.agent import control, lifelock, protocol
from netkit.launch import install, native

LAUNCHER_MARK = b'# netkit CNI plugin "'  # the second line of every launcher netkit ever wrote


@dataclass
class UninstallReport:
    """What an uninstall removed, stopped and kept."""

    removed: list[str] = field(default_factory=list)
    stopped: int | None = None  # the agent's pid
    kept: list[str] = field(default_factory=list)


def is_launcher(path: str) -> bool:
    """True when ``path`` is a plugin launcher written by a `netkit cni install` (any version): a
    Python launcher, or a C launcher (its marker)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    if head.startswith(native.ELF):
        data = native.read_binary(path)
        return data is not None and native.MARK in data
    lines = head.split(b"\n")
    return head.startswith(b"#!") and len(lines) > 1 and lines[1].startswith(LAUNCHER_MARK)


def remove_launchers(bin_dir: str, report: UninstallReport) -> None:
    """netkit's launchers in ``bin_dir``, the Python launchers behind the C ones (``.netkit/``,
    removed with the directory when that empties it) and netkit's ``loopback`` alias."""
    hidden = os.path.join(bin_dir, native.FALLBACK_DIR)
    for name in plugins.REGISTRY:
        for path in (os.path.join(bin_dir, name), os.path.join(hidden, name)):
            if is_launcher(path):
                os.unlink(path)
                report.removed.append(path)
            elif os.path.lexists(path):
                report.kept.append(f"{path} (not a netkit launcher)")
    try:
        os.rmdir(hidden)
        report.removed.append(hidden)
    except OSError:
        pass  # absent, or it holds what netkit did not write there
    alias = os.path.join(bin_dir, install.LOOPBACK_ALIAS)
    if install.is_own_loopback(alias):  # a foreign `loopback` is neither removed nor mentioned: not ours
        os.unlink(alias)
        report.removed.append(alias)


def is_own_conflist(path: str) -> bool:
    """True when ``path`` holds netkit's default network: its name, and only netkit's plugins."""
    try:
        with open(path, encoding="utf-8") as f:
            conf = json.load(f)
        types = [p["type"] for p in conf["plugins"]]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return conf.get("name") == install.DEFAULT_NETWORK and bool(types) and all(
        isinstance(t, str) and t.startswith("netkit-") for t in types)


def stop_agent(socket: str) -> int | None:
    """Stop the agent on ``socket`` if one answers; its pid."""
    try:
        return control.stop(socket).pid
    except control.NoAgent:
        return None


def remove_agent_files(socket: str) -> list[str]:
    """The files an agent keeps beside ``socket`` (once none holds its lock), and /run/netkit if that
    leaves it empty; the paths removed."""
    if not lifelock.is_free(socket):
        return []
    out = []
    for path in protocol.owned_paths(socket):
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        out.append(path)
    if os.path.dirname(socket) == paths.RUN_DIR:
        try:
            os.rmdir(paths.RUN_DIR)
            out.append(paths.RUN_DIR)
        except OSError:
            pass  # it holds other state (port index, locks): not the agent's to take
    return out


def uninstall(bin_dir: str = install.DEFAULT_BIN_DIR, conf_dir: str = install.DEFAULT_CONF_DIR,
              unit_dir: str = install.UNIT_DIR, socket: str = protocol.DEFAULT_SOCKET,
              systemd: bool | None = None) -> UninstallReport:
    """Remove netkit's launchers, conflist, agent units and agent (see the module)."""
    report = UninstallReport()
    report.removed += install.remove_agent_units(unit_dir, systemd)  # first: systemd would restart the agent
    remove_launchers(bin_dir, report)  # before the agent: a plugin exec in between would start another
    report.stopped = stop_agent(socket)
    report.removed += remove_agent_files(socket)
    conflist = os.path.join(conf_dir, install.CONFLIST_NAME)
    if is_own_conflist(conflist):
        os.unlink(conflist)
        report.removed.append(conflist)
    elif os.path.lexists(conflist):
        report.kept.append(f"{conflist} (not netkit's network)")
    return report
