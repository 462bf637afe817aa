"""Proof that something run in a throwaway machine (tests/throwaway.py) left the real one as it was.

``machine_untouched()`` looks before and after: the machine's network namespace and netkit's
directories (tests/machine.py), which of netkit's default paths exist, the named network namespaces
and the mount table.  Other test runs share this machine, and their namespaces and the runtime
roots in their temp dirs come and go meanwhile: so the named namespaces compared are those whose
name starts with ``netkit`` (every name the throwaway tests use does: ``netkit-demo``, ...), and the
mounts compared are all but those of other namespaces under /run/netns and those under /tmp (where
the throwaway machine's own scratch mount lives, inside its own mount namespace only).
"""

from __future__ import annotations

import contextlib
import glob
import os
from typing import Iterator

from harness import procs
from tests import machine
from tests import sandbox as sb

# The default paths the CLI and the demo write (and the parents that must not gain a directory).
DEFAULT_PATHS = ("/opt/cni", "/opt/cni/bin", "/etc/cni", "/etc/cni/net.d", "/etc/cni/net.d/netkit.conflist",
                 "/var/lib/netkit", "/var/lib/cni/networks/netkit", "/run/netkit/agent.sock", "/run/netns/netkit-demo")
OURS = "netkit"  # the start of every namespace name a throwaway test uses


def _netns() -> set[str]:
    return {n for n in sb.netns_names() if n.startswith(OURS)}


def _mounts() -> set[str]:
    return {f"{target} {what} {fstype}" for target, what, fstype in procs.mount_table()
            if not target.startswith("/tmp/")
            and not (target.startswith("/run/netns/") and not os.path.basename(target).startswith(OURS))}


def _paths() -> set[str]:
    return {p for p in DEFAULT_PATHS if os.path.lexists(p)} | set(glob.glob("/var/lib/cni/results/netkit-*"))


@contextlib.contextmanager
def machine_untouched() -> Iterator[None]:
    """Fail if the block changed the machine (see the module docstring)."""
    snap, netns, mounts, paths = machine.snapshot(), _netns(), _mounts(), _paths()
    yield
    problems = machine.changes(snap, machine.snapshot())
    after_netns, after_mounts, after_paths = _netns(), _mounts(), _paths()
    problems += [f"netns {n}" for n in sorted(after_netns - netns)] + [f"netns {n} (gone)" for n in sorted(netns - after_netns)]
    problems += [f"mount {m}" for m in sorted(after_mounts - mounts)] + [f"mount {m} (gone)" for m in sorted(mounts - after_mounts)]
    problems += [f"path {p}" for p in sorted(after_paths - paths)] + [f"path {p} (gone)" for p in sorted(paths - after_paths)]
    assert not problems, "the machine changed: " + ", ".join(problems)
