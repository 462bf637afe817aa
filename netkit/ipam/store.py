"""Leases on disk, host-local's layout: ``<dataDir>/<network>/<address>``, one file per address.

Interoperable with the reference host-local on the same directory: the same ``lock`` file is
flocked around every change, and its plain "containerID\\r\\nifname" files are read (and released)
too.  netkit's own lease files are JSON and carry the boot id, so leases of a previous boot are
reclaimed on the first ADD after a reboot (the reference leaks them).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
from typing import Iterator, NamedTuple

from netkit import errors, fileio
from netkit.ipam.config import Address
from netkit.net.names import sha256

BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
_BOOT_MARK = ".netkit-boot-id"
_LAST_RESERVED = "last_reserved_ip."
_TMP_MARK = ".tmp."  # fileio.write_atomic's temp files: "<path>.tmp.<pid>"
# An attachment's addresses, so a repeated ADD finds its own leases without reading every lease:
# "owner.<hash of containerID and ifname>", JSON.  Written before the lease and verified against
# it, so a hint may name an address the attachment no longer holds, never miss one it holds.
_HINT = "owner."
_HINTS_COMPLETE = ".netkit-owners"  # every lease of the directory has its hint (written after an indexing scan)


def current_boot_id() -> str:
    """This boot's id; ``NETKIT_BOOT_ID`` overrides it so tests can simulate a reboot."""
    override = os.environ.get("NETKIT_BOOT_ID")
    if override:
        return override
    with open(BOOT_ID_FILE, encoding="ascii") as f:
        return f.read().strip()


class Lease(NamedTuple):
    """Who holds an address."""

    address: Address
    container_id: str
    ifname: str
    boot_id: str = ""  # empty for leases written by the reference host-local

    def owned_by(self, container_id: str, ifname: str) -> bool:
        """True when the lease belongs to that attachment."""
        return self.container_id == container_id and self.ifname == ifname


class LeaseStore:
    """The leases of one network.  Use inside ``with store.locked():`` for any change."""

    def __init__(self, data_dir: str, network: str) -> None:
        if not network or "/" in network or network in (".", "..") or "\0" in network:
            raise errors.CNIError(errors.INVALID_CONFIG, "invalid network name", repr(network))
        self.dir = os.path.join(data_dir, network)

    @contextlib.contextmanager
    def locked(self) -> Iterator["LeaseStore"]:
        """Hold the network's lock (the same file host-local locks)."""
        fileio.ensure_dir(self.dir)
        with fileio.locked(os.path.join(self.dir, "lock")):
            self._sweep_partial_writes()
            yield self

    def _sweep_partial_writes(self) -> None:
        """Remove temp files of atomic writes whose writer died before the rename (SIGKILL, power loss).

        Every write in this directory happens under the lock held now, so any temp file here is
        an orphan; left alone it would stay forever (it is no lease, so nothing else removes it).
        """
        try:
            names = os.listdir(self.dir)
        except OSError:
            return
        for name in names:
            if _TMP_MARK in name:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.dir, name))

    def _path(self, addr: Address) -> str:
        return os.path.join(self.dir, str(addr))

    def _hint_path(self, container_id: str, ifname: str) -> str:
        digest = sha256(f"{container_id}\0{ifname}".encode(errors="surrogateescape")).hexdigest()[:32]
        return os.path.join(self.dir, _HINT + digest)

    def _hinted(self, container_id: str, ifname: str) -> list[Address]:
        try:
            rec = json.loads(fileio.read_regular(self._hint_path(container_id, ifname), 1 << 16))
            return [ipaddress.ip_address(a) for a in rec["addresses"]]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def _write_hint(self, container_id: str, ifname: str, addresses: list[Address]) -> None:
        path = self._hint_path(container_id, ifname)
        if not addresses:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        rec = {"containerID": container_id, "ifname": ifname, "addresses": sorted(map(str, set(addresses)))}
        fileio.write_atomic(path, json.dumps(rec).encode(), durable=False)

    def owned(self, container_id: str, ifname: str) -> list[Lease]:
        """The attachment's leases; call with the store locked.

        Through its hint once the directory is indexed (the first call indexes it: leases netkit
        wrote before hints existed get theirs).  Leases of the reference host-local are not seen
        here, only by DEL and GC: a repeated ADD through netkit of an attachment host-local
        made gets an address of its own.
        """
        if not os.path.exists(os.path.join(self.dir, _HINTS_COMPLETE)):
            owners: dict[tuple[str, str], list[Address]] = {}
            for lease in self.leases():
                if lease.boot_id:  # netkit's own: host-local's go on without a hint (read by DEL and GC)
                    owners.setdefault((lease.container_id, lease.ifname), []).append(lease.address)
            for (cid, ifn), addresses in owners.items():
                self._write_hint(cid, ifn, addresses)
            fileio.write_atomic(os.path.join(self.dir, _HINTS_COMPLETE), b"", durable=False)
        leases = [self._read(a) for a in self._hinted(container_id, ifname)]
        return [lease for lease in leases if lease is not None and lease.owned_by(container_id, ifname)]

    def forget(self, container_id: str, ifname: str) -> None:
        """Remove the attachment's hint (its leases are released)."""
        self._write_hint(container_id, ifname, [])

    def forget_all_but(self, valid: set[tuple[str, str]]) -> None:
        """Remove the hints of attachments not in ``valid`` (GC)."""
        try:
            names = [n for n in os.listdir(self.dir) if n.startswith(_HINT) and _TMP_MARK not in n]
        except OSError:
            return
        for name in names:
            try:
                rec = json.loads(fileio.read_regular(os.path.join(self.dir, name), 1 << 16))
                owner = (str(rec["containerID"]), str(rec["ifname"]))
            except (OSError, ValueError, KeyError, TypeError):
                owner = ("", "")  # unreadable: no valid attachment's
            if owner not in valid:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.dir, name))

    def leases(self, container_id: str | None = None) -> list[Lease]:
        """Every lease of the network (only those naming ``container_id``, if given); unreadable
        or corrupt files are skipped, not fatal."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise errors.CNIError(errors.IO_FAILURE, f"failed to list {self.dir}", str(exc)) from None
        # Files that do not contain the ID in either format's spelling are not parsed: with
        # hundreds of leases, parsing them all was most of an ADD's IPAM time.
        needles = () if container_id is None else (container_id.encode(), json.dumps(container_id)[1:-1].encode())
        out = []
        for name in names:
            try:
                addr = ipaddress.ip_address(name)
            except ValueError:
                continue
            lease = self._read(addr, needles)
            if lease is not None and (container_id is None or lease.container_id == container_id):
                out.append(lease)
        return out

    def _read(self, addr: Address, needles: tuple[bytes, ...] = ()) -> Lease | None:
        try:
            data = fileio.read_regular(self._path(addr), 4096)
        except OSError:
            return None
        if needles and not any(n in data for n in needles):
            return None
        try:
            rec = json.loads(data)
            return Lease(addr, str(rec["containerID"]), str(rec["ifname"]), str(rec.get("bootID", "")))
        except (ValueError, KeyError, TypeError):
            pass
        # The reference host-local's format: "containerID\r\nifname".
        text = data.decode("utf-8", "replace").replace("\r\n", "\n").split("\n")
        return Lease(addr, text[0].strip(), text[1].strip() if len(text) > 1 else "")

    def is_taken(self, addr: Address) -> bool:
        """True when ``addr`` has a lease file, whatever is in it."""
        return os.path.lexists(self._path(addr))

    def taken(self) -> set[Address]:
        """Addresses that have a lease file, whatever is in it (a corrupt file still blocks reuse)."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return set()
        out = set()
        for name in names:
            with contextlib.suppress(ValueError):
                out.add(ipaddress.ip_address(name))
        return out

    def reserve(self, addr: Address, container_id: str, ifname: str, boot_id: str) -> None:
        """Write the lease for ``addr`` (after the attachment's hint names it)."""
        self._write_hint(container_id, ifname, [*self._hinted(container_id, ifname), addr])
        rec = {"containerID": container_id, "ifname": ifname, "bootID": boot_id}
        # No fsync: after a power loss every lease of this boot is reclaimed anyway (boot id).
        fileio.write_atomic(self._path(addr), json.dumps(rec).encode(), durable=False)

    def release(self, addr: Address) -> None:
        """Remove the lease for ``addr`` (and it from its holder's hint); already gone is fine."""
        lease = self._read(addr)
        try:
            os.unlink(self._path(addr))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise errors.CNIError(errors.IO_FAILURE, f"failed to release {addr}", str(exc)) from None
        if lease is not None:
            self._unhint(addr, lease.container_id, lease.ifname)

    def unreserve(self, addr: Address, container_id: str, ifname: str) -> None:
        """Undo ``reserve``, however far it got: the lease, and ``addr`` in the attachment's hint
        (written first, so it may be there without the lease)."""
        self.release(addr)
        self._unhint(addr, container_id, ifname)

    def _unhint(self, addr: Address, container_id: str, ifname: str) -> None:
        hinted = self._hinted(container_id, ifname)
        if addr in hinted:
            self._write_hint(container_id, ifname, [a for a in hinted if a != addr])

    def last_reserved(self, index: int) -> Address | None:
        """The last address handed out from range set ``index`` (round-robin position)."""
        try:
            text = fileio.read_regular(os.path.join(self.dir, f"{_LAST_RESERVED}{index}"), 256)
            return ipaddress.ip_address(text.decode("ascii").strip())
        except (OSError, ValueError):
            return None

    def set_last_reserved(self, index: int, addr: Address) -> None:
        """Remember the round-robin position of range set ``index``."""
        fileio.write_atomic(os.path.join(self.dir, f"{_LAST_RESERVED}{index}"), str(addr).encode(), durable=False)

    def reclaim_previous_boots(self, boot_id: str) -> list[Lease]:
        """Release every netkit lease written under another boot id; run once per boot per network.

        A marker records the boot that last swept; leases written after it are of this boot, so
        later ADDs skip the scan.  Reference leases carry no boot id and are left alone.
        """
        mark = os.path.join(self.dir, _BOOT_MARK)
        try:
            if fileio.read_regular(mark, 256).decode("ascii", "replace").strip() == boot_id:
                return []
        except OSError:
            pass
        stale = [lease for lease in self.leases() if lease.boot_id and lease.boot_id != boot_id]
        for lease in stale:
            self.release(lease.address)
        fileio.write_atomic(mark, boot_id.encode())
        return stale
