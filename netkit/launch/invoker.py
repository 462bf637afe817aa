"""How a delegated netkit plugin runs: this installation's own launchers are answered without an exec.

A delegate found in CNI_PATH that is byte for byte the launcher this installation writes for its
name (same interpreter, same code) would answer what ``handler.handle`` answers here, so starting
an interpreter for it (~25-50 ms) buys nothing.  Where the plugins are already loaded (the agent,
a plugin running in-process) the handler runs right here; elsewhere (the runtime, ``netkit cni``)
the warm agent is asked first.  Anything else is exec'd as the spec describes.

Every process that runs plugins installs this choice with ``use()``: a plugin executable running
its plugin in-process (``handle``), every ``netkit`` command (the runtime's and ``netkit cni``'s
conflists included, and ``netkit agent``, whose served plugins delegate through it).
"""

from __future__ import annotations

import functools
import os
import sys

TYPE_CHECKING = False  # typing's own import costs a plugin exec ~3 ms; mypy honours this spelling
if TYPE_CHECKING:
    from collections.abc import Mapping

from netkit.cni import executor as executors
from netkit.launch import executable


@functools.lru_cache(maxsize=None)
def _own_launcher_texts(name: str) -> tuple[bytes, bytes]:
    paths = executable.import_paths()
    return tuple(executable.render(name, sys.executable, paths, spawn).encode()  # type: ignore[return-value]
                 for spawn in (True, False))


def warm_up() -> None:
    """Render every plugin's launcher once (sysconfig's paths: ~1 ms each), for a process whose forks
    each check launchers (the runtime server: every `netkit run` checks its root's)."""
    from netkit import plugins

    for name in plugins.REGISTRY:
        _own_launcher_texts(name)


def is_own_launcher(exe: str) -> bool:
    """True when ``exe`` is this very installation's launcher for the plugin it is named after (as
    ``netkit cni install`` writes it, with or without ``--no-agent``): a Python launcher byte for
    byte, or a C launcher carrying this installation's marker whose Python launcher is ours."""
    try:
        with open(exe, "rb") as f:
            head = f.read(8192)
    except OSError:
        return False
    if head in _own_launcher_texts(os.path.basename(exe)):
        return True
    return head.startswith(b"\x7fELF") and _is_own_c_launcher(exe)


def _is_own_c_launcher(exe: str) -> bool:
    from netkit.agent import protocol
    from netkit.launch import native

    data = native.read_binary(exe)
    fallback = native.fallback_path(exe)
    if data is None or native.marker(os.path.basename(exe), sys.executable, fallback,
                                     protocol.DEFAULT_SOCKET) not in data:
        return False
    try:
        with open(fallback, "rb") as f:
            return f.read(8192) == _own_launcher_texts(os.path.basename(exe))[0]
    except OSError:
        return False


def _plugins_loaded() -> bool:
    """True where a plugin module is already imported (the agent, a plugin running in-process).

    Not the ``netkit.plugins`` package: the installer imports it for the registry, and the runtime
    imports the installer, so that test sent every `netkit run` past the agent (bench/runtime_start.py:
    `run --rm -- true` on a bridge took 403 ms in-process, 251 ms through the agent).
    """
    from netkit import plugins

    return any(module in sys.modules for module, _ in plugins.REGISTRY.values())


def handle(name: str, env: Mapping[str, str], stdin: bytes) -> tuple[bytes, int]:
    """Run registered plugin ``name`` in this process, its own delegations by the same rule."""
    from netkit import plugins
    from netkit.cni import handler

    use()
    return handler.handle(plugins.get(name), env, stdin)


class Invoker(executors.RawExec):
    """The executor that answers this installation's own launchers without an exec."""

    def run(self, exe: str, env: Mapping[str, str], stdin: bytes) -> tuple[bytes, bytes, int]:
        """The agent's or this process's answer for our own launchers; an exec for anything else."""
        if not is_own_launcher(exe):
            return super().run(exe, env, stdin)
        name = os.path.basename(exe)
        answer = None
        if not _plugins_loaded():
            from netkit.agent import client

            answer = client.forward(name, env, stdin)
        out, code = answer if answer is not None else handle(name, env, stdin)
        return out, b"", code


def use() -> None:
    """Make the Invoker this process's executor (idempotent)."""
    if not isinstance(executors.current(), Invoker):
        executors.use(Invoker())
