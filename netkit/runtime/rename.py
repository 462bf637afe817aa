"""``netkit rename OLD NEW`` (Docker's rename): the record's name, and the container's name in the
embedded DNS of every network it is on, changed at once; its hostname and aliases stay."""

from __future__ import annotations

from netkit.runtime import networks, state
from netkit.runtime.root import Root
from netkit.runtime.state import Container, ContainerError


def _dns_dirs(root: Root, ctr: Container) -> list[tuple[str, str]]:
    """(network, records directory) of each of the container's networks that resolves names."""
    out = []
    for ep in ctr.endpoints:
        try:
            conf = networks.load(root, ep.network)
        except ContainerError:
            continue  # a network removed under it: no records to change
        for plugin in conf.get("plugins", []):
            if plugin.get("type") == "netkit-dns":
                from netkit.dns import records

                out.append((ep.network, plugin.get("dataDir") or records.DEFAULT_DIR))
    return out


def rename(root: Root, ref: str, new: str) -> Container:
    """Give container ``ref`` the name ``new`` (valid and free, as `run --name` wants it)."""
    from netkit.runtime.containers import valid_name

    valid_name(new)
    with root.locked():
        ctr = state.find(root, ref)
        old = ctr.name
        if new == old:
            raise ContainerError(f"renaming a container with the same name as its current name: {new}")
        if any(c.name == new for c in state.all_records(root)):
            raise ContainerError(f'the container name "{new}" is already in use')
        ctr.name = new
        state.save(root, ctr)  # first: the DNS records follow the record, never the other way round
        for network, data_dir in _dns_dirs(root, ctr):
            from netkit.dns.rename import rename as rename_records

            rename_records(data_dir, network, ctr.id, old, new)
    return ctr
