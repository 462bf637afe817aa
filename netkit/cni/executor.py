"""How a delegated plugin runs: found in CNI_PATH, then executed (libcni's ``invoke.Exec``).

``Executor`` is the interface and ``RawExec`` the spec's way (exec the file).  Delegation
(``delegate``) and the conflist runner (``chain``) run plugins through the process's current
executor, so whoever starts the process decides how: ``netkit.launch`` installs one that answers
this installation's own launchers without an exec, and tests pass a fake.  Nothing here knows any
plugin.  Imported on a plugin's cold path, so subprocess is imported only when a file is run.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing's own import costs a plugin exec ~3 ms; mypy honours this spelling
if TYPE_CHECKING:
    from collections.abc import Mapping

from netkit import errors

TIMEOUT_S = 60


def find(plugin_type: str, path: list[str]) -> str:
    """Absolute path of the executable for ``plugin_type`` in CNI_PATH (first match wins)."""
    if not plugin_type or "/" in plugin_type or plugin_type in (".", ".."):
        raise errors.CNIError(errors.INVALID_CONFIG, "invalid plugin type", repr(plugin_type))
    for directory in path:
        candidate = os.path.join(directory, plugin_type)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise errors.CNIError(errors.DELEGATE_FAILED, f"failed to find plugin {plugin_type!r} in CNI_PATH",
                          ":".join(path))


class Executor:
    """Finds and runs a plugin; subclasses say how it runs (``run``), a fake may find differently."""

    def find(self, plugin_type: str, path: list[str]) -> str:
        """The executable for ``plugin_type`` in ``path`` (CNI_PATH), by default the spec's lookup."""
        return find(plugin_type, path)

    def run(self, exe: str, env: Mapping[str, str], stdin: bytes) -> tuple[bytes, bytes, int]:
        """Run plugin ``exe`` with ``env`` (CNI_COMMAND included) and ``stdin``:
        (stdout, stderr, exit status); a CNIError if it could not be run at all."""
        raise NotImplementedError


class RawExec(Executor):
    """The spec's way: exec the file, wait for it (bounded), capture both streams."""

    def run(self, exe: str, env: Mapping[str, str], stdin: bytes) -> tuple[bytes, bytes, int]:
        """Exec ``exe`` with exactly ``env``; see Executor.run."""
        import subprocess

        try:
            proc = subprocess.run([exe], input=stdin, env=dict(env), capture_output=True, timeout=TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise errors.CNIError(errors.DELEGATE_FAILED, f"failed to run plugin {os.path.basename(exe)!r}",
                                  str(exc)) from None
        return proc.stdout, proc.stderr, proc.returncode


_current: Executor = RawExec()


def current() -> Executor:
    """The executor delegations of this process use when none is given."""
    return _current


def use(executor: Executor) -> Executor:
    """Make ``executor`` this process's executor; the previous one (to restore it)."""
    global _current
    previous, _current = _current, executor
    return previous
