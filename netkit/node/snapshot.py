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


def parse(entry: Any) -> model.Node | str:
    """One entry as a Node, or the line saying why it is refused (never an exception: one entry
    the parser did not foresee must not take the others, or the process, with it)."""
    try:
        return model.from_entry(entry)
    except model.NodeError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - the backstop behind model's checks
        return f"a node entry refused: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}: {entry!r:.80}"


def from_entries(entries: Iterable[Any]) -> Snapshot:
    """Parse every entry on its own: one bad node is refused, the others still count."""
    return from_parsed(parse(entry) for entry in entries)


def from_parsed(results: Iterable[model.Node | str]) -> Snapshot:
    """A snapshot of ``parse`` results, in order: a name listed twice keeps its first entry."""
    snap = Snapshot()
    for node in results:
        if isinstance(node, str):
            snap.refused.append(node)
        elif node.name in snap.nodes:
            snap.refused.append(f"node {node.name}: listed twice, the first entry counts")
        else:
            snap.nodes[node.name] = node
    return snap
