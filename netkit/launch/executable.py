"""What a plugin executable runs: read stdin, call the handler, write stdout, exit.

`netkit cni install` writes one tiny executable per plugin that imports this module only; the
executable runs this installation's interpreter with ``-IS`` (no site import: ~20 ms saved per
exec, measured in the field notes) and puts the few directories it needs on sys.path itself.
"""

from __future__ import annotations

import os
import sys

TEMPLATE = """#!{python} -IS
# netkit CNI plugin "{name}", written by `netkit cni install`; regenerate rather than edit.
import sys
sys.path[:0] = {paths!r}
from netkit.launch.executable import main
sys.exit(main({name!r}))
"""


def import_paths() -> list[str]:
    """Directories a launcher puts on sys.path: netkit's own and this interpreter's site-packages."""
    import sysconfig  # here, not above: a plugin exec imports this module and never needs it

    import netkit

    here = os.path.dirname(os.path.dirname(os.path.abspath(netkit.__file__)))
    out = [here]
    found = sysconfig.get_paths()
    venv = os.path.dirname(os.path.dirname(sys.executable))
    if sys.flags.no_site and os.path.isfile(os.path.join(venv, "pyvenv.cfg")):
        # A launcher runs with -S: site never moved sys.prefix into the venv, so the default scheme
        # names the system's site-packages, the launcher text differed from the installed one, and
        # every in-process bridge exec'd its IPAM delegate (~50 ms) instead of answering it here.
        found = sysconfig.get_paths("venv", vars={"base": venv, "platbase": venv})
    for key in ("purelib", "platlib"):
        path = found[key]
        if path not in out:
            out.append(path)
    return out


def render(name: str, python: str, paths: list[str]) -> str:
    """The source of the executable for plugin ``name``."""
    return TEMPLATE.format(python=python, name=name, paths=paths)


def main(plugin: str) -> int:
    """Entry point of a plugin executable; exits the process (returns only for "about").

    The warm agent serves the request when it runs (stdlib-only client, nothing else imported);
    otherwise the handler runs here: the same answer, slower.
    """
    if not os.environ.get("CNI_COMMAND"):
        from netkit import plugins
        from netkit.cni import handler

        sys.stderr.write(handler.about(plugin, plugins.describe(plugin)))
        return 0
    stdin = sys.stdin.buffer.read() if sys.stdin is not None else b""
    from netkit.agent import client

    answer = client.forward(plugin, os.environ, stdin)
    if answer is None:
        from netkit.launch import invoker

        answer = invoker.handle(plugin, os.environ, stdin)
    out, code = answer
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    sys.stderr.flush()
    # The answer is written; interpreter teardown (pyroute2's event loops, module GC) only adds
    # latency to every container start, so leave now.
    os._exit(code)
