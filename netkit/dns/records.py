"""The name records of DNS-enabled networks: one JSON file per network, written atomically.

A records directory (``/run/netkit/dns`` by default, the plugin's ``dataDir``) holds
``<network>.json`` per network with at least one attachment; the resolver daemon serving that
directory reads them all.  Every change happens under the directory's lock, so a plugin's
read-modify-write never loses another's.  A file carries the boot id it was written under: after a
reboot no container of the old one lives, and its records are read as empty.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Iterator

from netkit import errors, fileio, paths
from netkit.ipam.store import current_boot_id

DEFAULT_DIR = os.path.join(paths.RUN_DIR, "dns")
DEFAULT_DOMAIN = "dns.netkit"
_SUFFIX = ".json"
_LOCK = ".lock"
# A name or alias: DNS labels of letters, digits, '-' and '_' (Docker and podman accept '_' in
# container names and resolve them), joined by dots; case does not matter in DNS.
_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*")
MAX_NAME = 253


@dataclass
class Entry:
    """One attachment's names and addresses on one network."""

    container_id: str
    ifname: str
    names: list[str]
    addresses: list[str]
    upstreams: list[str] = field(default_factory=list)  # its own servers (--dns), else the network's


@dataclass
class NetworkRecords:
    """What the resolver knows of one network."""

    network: str
    domain: str = DEFAULT_DOMAIN
    gateways: list[str] = field(default_factory=list)  # where the resolver listens (port 53)
    subnets: list[str] = field(default_factory=list)  # who may ask
    upstreams: list[str] = field(default_factory=list)  # "ADDR" or "[ADDR]:PORT" / "ADDR:PORT" (v4)
    entries: list[Entry] = field(default_factory=list)
    boot_id: str = ""

    def without(self, container_id: str, ifname: str) -> list[Entry]:
        """The entries of every attachment but (container_id, ifname)."""
        return [e for e in self.entries if (e.container_id, e.ifname) != (container_id, ifname)]


def valid_name(name: str) -> str:
    """``name`` lowercased if it can be a DNS name in the network's domain; CNIError otherwise."""
    low = name.lower().rstrip(".")
    if len(low) > MAX_NAME or not _NAME.fullmatch(low):
        raise errors.CNIError(errors.INVALID_CONFIG, "invalid DNS name",
                              f"{name[:100]!r}: labels of letters, digits, '-' and '_', joined by dots")
    return low


def valid_domain(domain: str) -> str:
    """The domain name of a network's records, lowercased, without the final dot."""
    if not isinstance(domain, str) or not domain:
        raise errors.CNIError(errors.INVALID_CONFIG, "'domainName' must be a non-empty string")
    return valid_name(domain)


def path(data_dir: str, network: str) -> str:
    """The records file of ``network`` in ``data_dir``."""
    return os.path.join(data_dir, network + _SUFFIX)


@contextlib.contextmanager
def locked(data_dir: str) -> Iterator[None]:
    """Hold the records directory's lock (created with the directory if missing)."""
    fileio.ensure_dir(data_dir, 0o755)
    with fileio.locked(os.path.join(data_dir, _LOCK)):
        yield


def _decode(raw: bytes, network: str, boot_id: str) -> NetworkRecords:
    doc = json.loads(raw)
    recs = NetworkRecords(
        network=str(doc.get("network", network)), domain=str(doc.get("domain", DEFAULT_DOMAIN)),
        gateways=[str(a) for a in doc.get("gateways", [])], subnets=[str(s) for s in doc.get("subnets", [])],
        upstreams=[str(u) for u in doc.get("upstreams", [])], boot_id=str(doc.get("boot_id", "")),
        entries=[Entry(str(e["container_id"]), str(e["ifname"]), [str(n) for n in e["names"]],
                       [str(a) for a in e["addresses"]], [str(u) for u in e.get("upstreams", [])])
                 for e in doc.get("entries", [])])
    if recs.boot_id != boot_id:  # written before a reboot: no attachment of it lives
        recs.entries = []
    return recs


def load(data_dir: str, network: str) -> NetworkRecords | None:
    """The records of ``network``, or None when it has none (or an unreadable file)."""
    try:
        raw = fileio.read_regular(path(data_dir, network), 16 << 20)
        return _decode(raw, network, current_boot_id())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def load_all(data_dir: str) -> list[NetworkRecords]:
    """Every network's records in ``data_dir`` with at least one entry (the daemon's view)."""
    try:
        names = sorted(os.listdir(data_dir))
    except OSError:
        return []
    out = []
    for fname in names:
        if fname.endswith(_SUFFIX) and not fname.startswith("."):
            recs = load(data_dir, fname[: -len(_SUFFIX)])
            if recs is not None and recs.entries:
                out.append(recs)
    return out


def save(data_dir: str, recs: NetworkRecords) -> None:
    """Write ``recs`` atomically (under ``locked``), or remove the file when no entry is left."""
    if not recs.entries:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path(data_dir, recs.network))
        return
    recs.boot_id = current_boot_id()
    # Not fsynced: the records are worthless after a reboot (boot id), and a rename is atomic anyway.
    fileio.write_atomic(path(data_dir, recs.network), json.dumps(asdict(recs), indent=1).encode(), durable=False)


def networks_of(addresses: list[str]) -> list[str]:
    """The subnets (``ip/prefix`` networks) of interface addresses such as "10.88.0.5/16"."""
    return sorted({str(ipaddress.ip_interface(a).network) for a in addresses})
