"""The protocol core: ``handle(plugin, env, stdin) -> (stdout, exit code)``.

Pure: no sys.exit, no process-global state, so the same function serves a plugin executable, an
in-process test, and the warm agent (netkit.agent).  It is handed the plugin's functions (see
``plugin.Plugin``), the way the reference ``skel`` is handed cmdAdd/cmdDel: looking a plugin up by
name is the caller's business.  Every failure, expected or not, comes out as the spec's error
object; nothing escapes as a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping

from netkit import __version__, errors
from netkit.cni import version as versions

TYPE_CHECKING = False  # typing's own import costs a plugin exec ~3 ms; mypy honours this spelling
if TYPE_CHECKING:
    from netkit.cni.plugin import Plugin

# json, contextlib, request and result are imported inside, and the plugin passed in imports its
# module only when a command needs it: VERSION, the commonest call (a runtime sends it to every
# plugin whenever it loads a network), then imports nothing (json and the re and enum it pulls in
# were ~5 ms of a VERSION exec's ~19).


def about(name: str, description: str) -> str:
    """The short human description printed when plugin ``name`` runs without CNI_COMMAND."""
    return (f"{name} (netkit {__version__}): {description}\n"
            f"CNI protocol versions supported: {', '.join(versions.SUPPORTED)}\n")


def _dump(obj: object) -> bytes:
    import json

    return json.dumps(obj, indent=2).encode() + b"\n"


def asked_version(stdin: bytes) -> str | None:
    """The X of a VERSION request that is exactly ``{"cniVersion": "X"}`` (what libcni sends; any
    whitespace between the tokens), or None for anything else, which is then read as JSON."""
    text = stdin.strip()
    if not (text.startswith(b"{") and text.endswith(b"}")):
        return None
    key, colon, value = text[1:-1].partition(b":")
    value = value.strip()
    if not colon or key.strip() != b'"cniVersion"' or len(value) < 2 or value[:1] != b'"' or value[-1:] != b'"':
        return None
    inner = value[1:-1]
    if b'"' in inner or b"\\" in inner:  # another key, or an escape: not the plain form
        return None
    return inner.decode("ascii", "replace")


def version_text(asked: str) -> bytes:
    """The VERSION answer as ``_dump`` writes it (json.dumps, indent 2), without json."""
    listed = ",\n".join(f'    "{v}"' for v in versions.SUPPORTED)
    return f'{{\n  "cniVersion": "{asked}",\n  "supportedVersions": [\n{listed}\n  ]\n}}\n'.encode()


def _version_reply(stdin: bytes) -> bytes:
    # VERSION is a negotiation: answer whatever came in, in the asked version when we speak it.
    asked = asked_version(stdin)
    if asked is None:
        import json

        try:
            conf = json.loads(stdin or b"{}")
            if isinstance(conf, dict):
                asked = conf.get("cniVersion")
        except (ValueError, RecursionError):
            pass
    return version_text(asked if asked in versions.SUPPORTED else versions.LATEST)


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
            import contextlib

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
