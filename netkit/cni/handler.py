"""The protocol core: ``handle(plugin, env, stdin) -> (stdout, exit code)``.

Pure: no sys.exit, no process-global state, so the same function serves a plugin executable, an
in-process test, and the warm agent (netkit.agent).  It is handed the plugin's functions (see
``plugin.Plugin``), the way the reference ``skel`` is handed cmdAdd/cmdDel: looking a plugin up by
name is the caller's business.  Every failure, expected or not, comes out as the spec's error
object; nothing escapes as a traceback.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping

from netkit import __version__, errors
from netkit.cni import version as versions

TYPE_CHECKING = False  # typing's own import costs a plugin exec ~3 ms; mypy honours this spelling
if TYPE_CHECKING:
    from netkit.cni.plugin import Plugin

# request/result are imported inside handle(), and the plugin passed in imports its module only
# when a command needs it: VERSION, the commonest call (a runtime sends it to every plugin whenever
# it loads a network), then costs only json.


def about(name: str, description: str) -> str:
    """The short human description printed when plugin ``name`` runs without CNI_COMMAND."""
    return (f"{name} (netkit {__version__}): {description}\n"
            f"CNI protocol versions supported: {', '.join(versions.SUPPORTED)}\n")


def _dump(obj: object) -> bytes:
    return json.dumps(obj, indent=2).encode() + b"\n"


def _version_reply(stdin: bytes) -> bytes:
    # VERSION is a negotiation: answer whatever came in, in the asked version when we speak it.
    asked = versions.LATEST
    try:
        conf = json.loads(stdin or b"{}")
        if isinstance(conf, dict) and conf.get("cniVersion") in versions.SUPPORTED:
            asked = conf["cniVersion"]
    except (ValueError, RecursionError):
        pass
    return _dump({"cniVersion": asked, "supportedVersions": list(versions.SUPPORTED)})


def handle(plugin: Plugin, env: Mapping[str, str], stdin: bytes) -> tuple[bytes, int]:
    """Run one CNI command of ``plugin`` and return what goes to stdout and the exit status."""
    reply_version = versions.LATEST
    try:
        if env.get("CNI_COMMAND") == "VERSION":
            return _version_reply(stdin), 0
        from netkit.cni import request as requests
        from netkit.cni import result as results

        req = requests.parse(env, stdin)
        reply_version = req.cni_version
        if req.command == "ADD":
            result = plugin.add(req)
            try:
                return _dump(results.encode(result, req.cni_version)), 0
            except Exception:
                # The attachment exists but cannot be reported: the runtime will see a failed ADD,
                # so take it back, as any failed ADD leaves nothing.
                with contextlib.suppress(Exception):
                    plugin.delete(req)
                raise
        if req.command == "DEL":
            plugin.delete(req)
        elif req.command == "CHECK":
            plugin.check(req)
        elif req.command == "STATUS":
            plugin.status(req)
        elif req.command == "GC":
            plugin.gc(req)
        return b"", 0
    except errors.CNIError as exc:
        return _dump(exc.to_dict(reply_version)), 1
    except Exception as exc:  # noqa: BLE001 - the protocol promises JSON, never a traceback
        err = errors.CNIError(errors.INTERNAL, "internal error", f"{type(exc).__name__}: {exc}"[:500])
        return _dump(err.to_dict(reply_version)), 1
