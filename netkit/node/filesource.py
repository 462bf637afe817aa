"""``--nodes-file FILE``: the cluster's nodes as a YAML or JSON file, re-read when it changes.

The file holds a list of nodes, under ``nodes:`` or ``items:`` (a ``kubectl get nodes -o yaml``
NodeList works as it is) or at the top; each either a Kubernetes Node object or the short form
``{name: n1, internalIP: 10.0.0.1, podCIDRs: [10.244.1.0/24]}``.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from netkit.node import snapshot


class FileError(ValueError):
    """The file as a whole cannot be read or parsed (the previous facts stay in force)."""


def _entries(doc: Any) -> list[Any]:
    # An empty or cut-off file is not "no nodes": taken as such, every route would go. Only an
    # explicit empty list (`nodes: []`, `[]`) says the cluster has no nodes.
    if doc is None:
        raise FileError("empty: expected a list of nodes (an explicit nodes: [] for none)")
    if isinstance(doc, dict):
        key = next((k for k in ("nodes", "items") if k in doc), None)
        if key is None:
            raise FileError("neither nodes: nor items: (an explicit nodes: [] for none)")
        doc = doc[key]
        if doc is None:
            raise FileError(f"{key}: is empty (an explicit {key}: [] for none)")
    if not isinstance(doc, list):
        raise FileError("expected a list of nodes (at the top, under nodes: or under items:)")
    return doc


class NodesFile:
    """A nodes file and what it last looked like on disk, so ``changed()`` is a stat, not a read."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._seen: tuple[int, int, int, int] | None = None

    def _stamp(self) -> tuple[int, int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        # The inode too: an atomic rewrite (rename over) can keep size and a coarse mtime.
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def changed(self) -> bool:
        """True when the file differs from the last ``read()`` (or was never read)."""
        return self._seen is None or self._stamp() != self._seen

    def read(self) -> snapshot.Snapshot:
        """Parse the file now; FileError when it is missing or is not a list of nodes."""
        self._seen = self._stamp()
        try:
            with open(self.path, encoding="utf-8") as f:
                doc = yaml.safe_load(f)
        except OSError as exc:
            raise FileError(f"{self.path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise FileError(f"{self.path}: not YAML/JSON: {' '.join(str(exc).split())}") from None
        try:
            return snapshot.from_entries(_entries(doc))
        except FileError as exc:
            raise FileError(f"{self.path}: {exc}") from None


class FileSource:
    """The daemon's Source over a NodesFile: a snapshot when the file changed, SourceError when it
    cannot be read (the last good facts stay in force)."""

    def __init__(self, path: str) -> None:
        self.file = NodesFile(path)

    def poll(self) -> snapshot.Snapshot | None:
        """See ``daemon.Source.poll``."""
        if not self.file.changed():
            return None
        try:
            return self.file.read()
        except FileError as exc:
            raise snapshot.SourceError(str(exc)) from None
