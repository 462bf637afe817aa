"""What a plugin executable runs: read stdin, call the handler, write stdout, exit.

`netkit cni install` writes one tiny executable per plugin that imports this module only; the
executable runs this installation's interpreter with ``-IS`` (no site import: ~20 ms saved per
exec, measured in the field notes) and puts the few directories it needs on sys.path itself.  The
default install puts a C launcher (native.py, launcher.c) in front of it, which answers through the
agent by itself and execs this one, from ``<bin>/.netkit/<name>``, for everything else.
"""

from __future__ import annotations

import os
import sys

TEMPLATE = """#!{python} -IS
# netkit CNI plugin "{name}", written by `netkit cni install`; regenerate rather than edit.
import sys
sys.path[:0] = {paths!r}
from netkit.launch.executable import main
sys.exit(main({name!r}{options}))
"""
NO_SPAWN = ", spawn=False"  # the launcher text of `netkit cni install --no-agent`


def import_paths() -> list[str]:
    """Directories a launcher puts on sys.path: netkit's own and this interpreter's site-packages."""
    import sysconfig  # here, not above: a plugin exec imports this module and never needs it

    import netkit

    here = os.path.dirname(os.path.dirname(os.path.abspath(netkit.__file__)))
    out = [here]
    venv = _venv()
    found = sysconfig.get_paths("venv", vars={"base": venv, "platbase": venv}) if venv else sysconfig.get_paths()
    for key in ("purelib", "platlib"):
        path = found[key]
        if path not in out:
            out.append(path)
    return out


def _venv() -> str:
    """This interpreter's virtual environment, or "".

    Not sys.prefix alone: site.py is what points it at a venv, and a launcher runs with -S.  Without
    this a launcher computed other paths than the installer wrote, took its own sibling launchers for
    foreign ones and exec'd every IPAM delegation (~60 ms per in-process ADD in the repo's venv).
    """
    if sys.prefix != sys.base_prefix:
        return sys.prefix
    top = os.path.dirname(os.path.dirname(os.path.abspath(sys.executable)))
    return top if os.path.exists(os.path.join(top, "pyvenv.cfg")) else ""


def render(name: str, python: str, paths: list[str], spawn: bool = True) -> str:
    """The source of the executable for plugin ``name``; ``spawn=False``: it never starts an agent."""
    return TEMPLATE.format(python=python, name=name, paths=paths, options="" if spawn else NO_SPAWN)


def main(plugin: str, spawn: bool = True) -> int:
    """Entry point of a plugin executable; exits the process (returns only for "about").

    The warm agent serves the request when it runs (stdlib-only client, nothing else imported);
    otherwise the handler runs here: the same answer, slower.  Then, when no agent served (none
    there, or one of another version) and ``spawn``, one is started (launch/autostart.py), after
    the answer is written and the runtime's pipes are let go.  NETKIT_AGENT=off: in-process only.
    """
    if not os.environ.get("CNI_COMMAND"):
        from netkit import plugins
        from netkit.cni import handler

        sys.stderr.write(handler.about(plugin, plugins.describe(plugin)))
        return 0
    stdin = sys.stdin.buffer.read() if sys.stdin is not None else b""
    from netkit.agent import client, protocol

    got: tuple[bytes, int] | str = client.NO_AGENT
    if protocol.enabled(os.environ):
        got = client.exchange(plugin, os.environ, stdin)
    if isinstance(got, tuple):
        out, code = got
    else:
        from netkit.launch import invoker

        out, code = invoker.handle(plugin, os.environ, stdin)
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    sys.stderr.flush()
    if spawn and not isinstance(got, tuple):
        _start_agent(got)
    # The answer is written; interpreter teardown (pyroute2's event loops, module GC) only adds
    # latency to every container start, so leave now.
    os._exit(code)


def _start_agent(why: str) -> None:
    """Let go of stdout and stderr (the runtime reads them to EOF, and an agent must not hold them),
    then start or replace the agent as ``why`` calls for.  Never fails the call: it is answered."""
    try:
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 1)  # not closed: the descriptors stay taken, so no later open lands on 1 or 2
        os.dup2(null, 2)
        os.close(null)
        from netkit.launch import autostart

        autostart.after_fallback(why, os.environ)
    except Exception:  # noqa: BLE001 - the answer is out; an agent not started is tried again next call
        pass
