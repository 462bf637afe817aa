"""Delegation to another plugin (IPAM): by exec, as the spec describes, or without one for our own.

The delegate gets the same environment (CNI_COMMAND replaced) and the same config on stdin, and is
found by its ``type`` in CNI_PATH.  So netkit-bridge works with the reference host-local and the
reference bridge works with netkit-ipam.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from typing import Mapping

from netkit import errors
from netkit.cni import result as results
from netkit.cni.request import Request

TIMEOUT_S = 60


def find(plugin_type: str, path: list[str]) -> str:
    """Absolute path of the executable for ``plugin_type`` in CNI_PATH."""
    if not plugin_type or "/" in plugin_type or plugin_type in (".", ".."):
        raise errors.CNIError(errors.INVALID_CONFIG, "invalid plugin type", repr(plugin_type))
    for directory in path:
        candidate = os.path.join(directory, plugin_type)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise errors.CNIError(errors.DELEGATE_FAILED, f"failed to find plugin {plugin_type!r} in CNI_PATH",
                          ":".join(path))


@functools.lru_cache(maxsize=None)
def _own_launcher_text(plugin_type: str) -> bytes:
    from netkit import install
    from netkit.cni import launcher

    return launcher.render(plugin_type, sys.executable, install.import_paths()).encode()


def _is_own_launcher(exe: str, plugin_type: str) -> bool:
    """True when ``exe`` is this very installation's launcher for ``plugin_type`` (same interpreter,
    same code): its answer is then what handler.handle gives here."""
    try:
        with open(exe, "rb") as f:
            head = f.read(8192)
    except OSError:
        return False
    return head == _own_launcher_text(plugin_type)


def _plugins_loaded() -> bool:
    """True where a plugin module is already imported (the agent, a plugin running in-process).

    Not the ``netkit.plugins`` package: the installer imports it for the registry, and the runtime
    imports the installer, so that test sent every `netkit run` past the agent (bench/runtime_start.py:
    `run --rm -- true` on a bridge took 403 ms in-process, 251 ms through the agent).
    """
    from netkit import plugins

    return any(module in sys.modules for module, _ in plugins.REGISTRY.values())


def _answer_without_exec(plugin_type: str, env: Mapping[str, str], stdin: bytes) -> tuple[bytes, int]:
    """Serve a request for one of our own launchers without starting an interpreter (~25-50 ms).

    Where the plugins are already loaded (the agent, or a plugin running in-process) the handler
    runs right here; elsewhere (the runtime, ``netkit cni``) the warm agent is asked first.
    """
    if not _plugins_loaded():
        from netkit.agent import client

        answer = client.forward(plugin_type, env, stdin)
        if answer is not None:
            return answer
    from netkit.cni import handler

    return handler.handle(plugin_type, env, stdin)


def invoke(plugin_type: str, command: str, env: Mapping[str, str], stdin: bytes,
           path: list[str]) -> results.Result | None:
    """Run plugin ``plugin_type`` from ``path`` with ``command``; return its ADD result.

    Other plugins are exec'd as the spec describes; netkit's own launchers are answered without
    the exec when they are this installation's (same answer, see _answer_without_exec).  A failure
    comes back as the plugin's own error (code and all) raised as a CNIError.
    """
    exe = find(plugin_type, path)
    full_env = dict(env)
    full_env["CNI_COMMAND"] = command
    if _is_own_launcher(exe, plugin_type):
        out, code = _answer_without_exec(plugin_type, full_env, stdin)
        proc = subprocess.CompletedProcess([exe], code, out, b"")
    else:
        try:
            proc = subprocess.run([exe], input=stdin, env=full_env, capture_output=True, timeout=TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise errors.CNIError(errors.DELEGATE_FAILED, f"failed to run plugin {plugin_type!r}",
                                  str(exc)) from None
    if proc.returncode != 0:
        raise _error_from(plugin_type, proc)
    if command != "ADD":
        return None
    try:
        return results.normalize(json.loads(proc.stdout))
    except ValueError:
        raise errors.CNIError(errors.DELEGATE_FAILED, f"plugin {plugin_type!r} returned invalid JSON",
                              proc.stdout[:300].decode(errors="replace")) from None


def call(command: str, plugin_type: str, req: Request) -> results.Result | None:
    """Delegate ``command`` for this request: same environment, same config on stdin."""
    return invoke(plugin_type, command, req.env, req.stdin, req.path)


def _error_from(plugin_type: str, proc: subprocess.CompletedProcess[bytes]) -> errors.CNIError:
    """Pass the delegate's own error through, code and all."""
    try:
        err = json.loads(proc.stdout)
        return errors.CNIError(int(err["code"]), str(err.get("msg", "")), str(err.get("details", "")))
    except (ValueError, KeyError, TypeError):
        text = (proc.stdout + proc.stderr)[:300].decode(errors="replace")
        return errors.CNIError(errors.DELEGATE_FAILED, f"plugin {plugin_type!r} failed (exit {proc.returncode})", text)
