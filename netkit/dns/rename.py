"""Renaming a container in the records (Docker's ``docker rename``): its name on every network it is
on changes at once, its aliases stay."""

from __future__ import annotations

from netkit import errors
from netkit.dns import control, records


def rename(data_dir: str, network: str, container_id: str, old: str, new: str) -> bool:
    """Replace name ``old`` of ``container_id``'s attachments on ``network`` by ``new`` and have the
    resolver serve it before returning; False when the network has no such entry (nothing to do).

    A new name no DNS name can spell drops the old one without a replacement, as ADD leaves such a
    name out (the runtime's names are looser than DNS's).
    """
    try:
        spelled = [records.valid_name(new)]
    except errors.CNIError:
        spelled = []
    old_key = old.lower()
    with records.locked(data_dir):
        recs = records.load(data_dir, network)
        if recs is None:
            return False
        changed = False
        for entry in recs.entries:
            if entry.container_id == container_id and old_key in entry.names:
                i = entry.names.index(old_key)
                entry.names[i:i + 1] = [n for n in spelled if n not in entry.names]
                changed = True
        if not changed:
            return False
        records.save(data_dir, recs)
        control.sync(data_dir)
    return True
