"""What a source hands the loop: the usable nodes, and one line per entry it had to skip."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from netkit.node import model


class SourceError(Exception):
    """A source cannot deliver facts right now (unreadable file, API down): logged, retried."""


@dataclass
class Snapshot:
    """Every usable node by name, and why each refused entry was refused (one line each)."""

    nodes: dict[str, model.Node] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)


def from_entries(entries: Iterable[Any]) -> Snapshot:
    """Parse every entry on its own: one bad node is refused, the others still count."""
    snap = Snapshot()
    for entry in entries:
        try:
            node = model.from_entry(entry)
        except model.NodeError as exc:
            snap.refused.append(str(exc))
            continue
        if node.name in snap.nodes:
            snap.refused.append(f"node {node.name}: listed twice, the first entry counts")
            continue
        snap.nodes[node.name] = node
    return snap
