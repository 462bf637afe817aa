"""Delegation to another plugin (IPAM), as the spec describes it.

The delegate gets the same environment (CNI_COMMAND replaced) and the same config on stdin, and is
found by its ``type`` in CNI_PATH.  So netkit-bridge works with the reference host-local and the
reference bridge works with netkit-ipam.  How the delegate runs (an exec, or an answer without one
for netkit's own launchers) is the executor's business (``executor``), not this module's.
"""

from __future__ import annotations

import json
from typing import Mapping

from netkit import errors
from netkit.cni import executor as executors
from netkit.cni import result as results
from netkit.cni.request import Request


def invoke(plugin_type: str, command: str, env: Mapping[str, str], stdin: bytes, path: list[str],
           executor: executors.Executor | None = None) -> results.Result | None:
    """Run plugin ``plugin_type`` from ``path`` with ``command``; return its ADD result.

    ``executor`` finds and runs it (default: the process's, see executor.use).  A failure comes
    back as the plugin's own error (code and all) raised as a CNIError.
    """
    run = executor or executors.current()
    exe = run.find(plugin_type, path)
    full_env = dict(env)
    full_env["CNI_COMMAND"] = command
    stdout, stderr, code = run.run(exe, full_env, stdin)
    if code != 0:
        raise _error_from(plugin_type, stdout, stderr, code)
    if command != "ADD":
        return None
    try:
        return results.normalize(json.loads(stdout))
    except ValueError:
        raise errors.CNIError(errors.DELEGATE_FAILED, f"plugin {plugin_type!r} returned invalid JSON",
                              stdout[:300].decode(errors="replace")) from None


def call(command: str, plugin_type: str, req: Request) -> results.Result | None:
    """Delegate ``command`` for this request: same environment, same config on stdin."""
    return invoke(plugin_type, command, req.env, req.stdin, req.path)


def _error_from(plugin_type: str, stdout: bytes, stderr: bytes, code: int) -> errors.CNIError:
    """Pass the delegate's own error through, code and all."""
    try:
        err = json.loads(stdout)
        return errors.CNIError(int(err["code"]), str(err.get("msg", "")), str(err.get("details", "")))
    except (ValueError, KeyError, TypeError):
        text = (stdout + stderr)[:300].decode(errors="replace")
        return errors.CNIError(errors.DELEGATE_FAILED, f"plugin {plugin_type!r} failed (exit {code})", text)
