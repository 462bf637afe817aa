"""Where one netkit "host" keeps everything: state, networks, plugins, leases, namespaces.

All of it lives under one root (``--root`` / ``NETKIT_ROOT``, default /var/lib/netkit), so several
independent netkit hosts can run side by side (tests, labs), each with its own root.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from netkit import fileio

DEFAULT_ROOT = "/var/lib/netkit"
ENV_ROOT = "NETKIT_ROOT"


class Root:
    """The directories of one netkit root."""

    def __init__(self, path: str | None = None) -> None:
        self.path = os.path.abspath(path or os.environ.get(ENV_ROOT) or DEFAULT_ROOT)
        self.containers = os.path.join(self.path, "containers")
        self.networks = os.path.join(self.path, "networks")
        self.bin = os.path.join(self.path, "bin")
        self.ipam = os.path.join(self.path, "ipam")
        self.cni_cache = os.path.join(self.path, "cni-cache")
        self.netns = os.path.join(self.path, "netns")
        self._lock = os.path.join(self.path, "lock")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise changes to this root's state (names, ports, records)."""
        fileio.ensure_dir(self.path)
        with fileio.locked(self._lock):
            yield

    def prepare(self) -> None:
        """Create the directories and (re)write the plugin launchers unless they are already what
        this installation writes (an upgrade may change what they import, not only the version)."""
        for d in (self.containers, self.networks, self.bin, self.ipam, self.cni_cache, self.netns):
            fileio.ensure_dir(d)
        from netkit.launch import install

        if not install.plugins_current(self.bin):
            install.install_plugins(self.bin)

    @property
    def cni_path(self) -> list[str]:
        """Where plugins are looked up: this root's own, then the usual directories."""
        return [self.bin, "/opt/cni/bin", "/usr/lib/cni"]

    def container_dir(self, cid: str) -> str:
        """The directory of one container's record and log."""
        return os.path.join(self.containers, cid)
