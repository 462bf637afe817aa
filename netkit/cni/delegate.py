"""Delegation to another plugin (IPAM) by exec, exactly as the spec describes.

The delegate gets the same environment (CNI_COMMAND replaced) and the same config on stdin, and is
found by its ``type`` in CNI_PATH.  So netkit-bridge works with the reference host-local and the
reference bridge works with netkit-ipam.
"""

from __future__ import annotations

import json
import os
import subprocess
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


def invoke(plugin_type: str, command: str, env: Mapping[str, str], stdin: bytes,
           path: list[str]) -> results.Result | None:
    """Exec plugin ``plugin_type`` from ``path`` with ``command``; return its ADD result.

    A failure comes back as the plugin's own error (code and all) raised as a CNIError.
    """
    exe = find(plugin_type, path)
    full_env = dict(env)
    full_env["CNI_COMMAND"] = command
    try:
        proc = subprocess.run([exe], input=stdin, env=full_env, capture_output=True, timeout=TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise errors.CNIError(errors.DELEGATE_FAILED, f"failed to run plugin {plugin_type!r}", str(exc)) from None
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
