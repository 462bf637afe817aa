"""An index of the host ports published in a network namespace, so that a conflict check costs a
lookup per mapping instead of a read of every attachment's rules.

The rules stay the truth; the index only says where to look.  Layout, one directory per network
namespace (named by the namespace's inode: /run is per boot, and an entry left by a dead
namespace whose inode came back is verified away like any stale one)::

    <root>/<netns inode>/complete              every publication of the namespace is indexed
    <root>/<netns inode>/tcp-8080/*            owner chain of tcp/*/8080
    <root>/<netns inode>/tcp-8080/127.0.0.1    owner chain of tcp/127.0.0.1/8080
    <root>/<netns inode>/owners/<chain>        the entries a chain owns, one per line
    <root>/<netns inode>/tmp/                  temp files of atomic writes: any there is a killed
                                               writer's (every write holds the firewall lock), swept

An entry can be stale (its writer was killed before the rules were committed, or the rules went
another way: a flush, GC): every candidate clash is checked against the owner's rules, and a stale
entry is removed on the spot.  An entry can never be missing: it is written before the rules, and
a namespace without ``complete`` (rules made before the index existed) is indexed from a full
reading of the rules first.  Callers hold the firewall lock.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterable

from netkit import fileio, paths
from netkit.firewall.model import PortMapping

ROOT = f"{paths.RUN_DIR}/ports"
_ANY = "*"


def namespace_key(path: str = "/proc/thread-self/ns/net") -> str:
    """The calling thread's network namespace, as a directory name (its inode)."""
    return str(os.stat(path).st_ino)


def parse_label(label: str) -> PortMapping | None:
    """The mapping a DNAT rule comment names (``tcp/*/8080``), or None for other comments."""
    protocol, _, rest = label.partition("/")
    host_ip, _, port = rest.rpartition("/")
    if not port.isdigit() or not protocol:
        return None
    return PortMapping(int(port), 0, protocol, "" if host_ip == _ANY else host_ip)


class PortIndex:
    """The index of the calling thread's network namespace."""

    def __init__(self, root: str = ROOT, key: str = "") -> None:
        self.dir = os.path.join(root, key or namespace_key())
        self._tmp = os.path.join(self.dir, "tmp")
        self._swept = False

    def _write(self, path: str, data: bytes) -> None:
        """An atomic write whose temp file lives in tmp/ (swept first: a killed writer's orphans)."""
        fileio.ensure_dir(self._tmp)
        if not self._swept:
            self.sweep()
        fileio.write_atomic(path, data, durable=False, tmp_dir=self._tmp)

    def sweep(self) -> None:
        """Remove temp files of writers killed mid-write."""
        self._swept = True
        for name in self.strays():
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self._tmp, name))

    def strays(self) -> list[str]:
        """Temp files left in tmp/ (none unless a writer was killed)."""
        try:
            return sorted(os.listdir(self._tmp))
        except OSError:
            return []

    def _port_dir(self, m: PortMapping) -> str:
        return os.path.join(self.dir, f"{m.protocol}-{m.host_port}")

    def _entry(self, m: PortMapping) -> str:
        return os.path.join(f"{m.protocol}-{m.host_port}", m.host_ip or _ANY)

    def _owner_file(self, chain: str) -> str:
        return os.path.join(self.dir, "owners", chain)

    @property
    def complete(self) -> bool:
        """True once every publication of the namespace is in the index."""
        return os.path.exists(os.path.join(self.dir, "complete"))

    def rebuild(self, published: dict[str, list[PortMapping]]) -> None:
        """Index ``published`` (owner chain -> its mappings, read from the rules) and mark it complete;
        sweep away the indexes of namespaces that no longer exist."""
        _rmtree(self.dir)
        _sweep(os.path.dirname(self.dir), keep=os.path.basename(self.dir))
        for chain, mappings in published.items():
            self.add(chain, mappings)
        self._write(os.path.join(self.dir, "complete"), b"")

    def candidates(self, m: PortMapping) -> list[tuple[PortMapping, str]]:
        """Indexed mappings that overlap ``m``, with their owner chains (possibly stale)."""
        d = self._port_dir(m)
        try:
            names = os.listdir(d)  # a port's few entries; overlaps() picks (0.0.0.0 meets 10.0.0.1)
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            other = PortMapping(m.host_port, 0, m.protocol, "" if name == _ANY else name)
            owner = self.owner_of(os.path.join(os.path.basename(d), name))
            if owner and other.overlaps(m):  # (no owner: removed meanwhile)
                out.append((other, owner))
        return out

    def add(self, chain: str, mappings: Iterable[PortMapping]) -> None:
        """Record ``chain`` as the owner of ``mappings`` (its owner file first, so removal finds them all)."""
        entries = sorted({self._entry(m) for m in mappings})
        if not entries:
            return
        fileio.ensure_dir(os.path.join(self.dir, "owners"))
        self._write(self._owner_file(chain), "".join(e + "\n" for e in entries).encode())
        for entry in entries:
            fileio.ensure_dir(os.path.join(self.dir, os.path.dirname(entry)))
            self._write(os.path.join(self.dir, entry), chain.encode())

    def owners(self) -> list[str]:
        """Chains that own entries (some possibly stale)."""
        try:
            return sorted(os.listdir(os.path.join(self.dir, "owners")))
        except OSError:
            return []

    def entries(self) -> list[str]:
        """Every entry (``tcp-8080/*``), for inspection."""
        out = []
        with contextlib.suppress(OSError):
            for d in os.listdir(self.dir):
                if "-" in d and d != "tmp" and os.path.isdir(os.path.join(self.dir, d)):
                    out += [os.path.join(d, n) for n in os.listdir(os.path.join(self.dir, d))]
        return sorted(out)

    def owner_of(self, entry: str) -> str:
        """The chain recorded for ``entry`` ("" if none)."""
        try:
            return fileio.read_regular(os.path.join(self.dir, entry), 256).decode(errors="replace").strip()
        except OSError:
            return ""

    def remove(self, chain: str) -> None:
        """Forget every entry ``chain`` owns; nothing recorded is fine."""
        if not self._swept:
            self.sweep()
        try:
            entries = fileio.read_regular(self._owner_file(chain), 1 << 20).decode(errors="replace").split()
        except OSError:
            return
        for entry in entries:
            self.drop(entry, chain)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._owner_file(chain))

    def drop_stale(self, m: PortMapping, owner: str) -> None:
        """Forget one entry found stale (its owner no longer publishes it)."""
        self.drop(self._entry(m), owner)

    def drop(self, entry: str, owner: str) -> None:
        """Remove ``entry`` if ``owner`` still holds it (another chain may have taken it since)."""
        path = os.path.join(self.dir, entry)
        if ".." in entry.split(os.sep) or self.owner_of(entry) != owner:
            return
        try:
            os.unlink(path)
        except OSError:
            return
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(path))  # the port's last entry: its directory goes too


def live_namespaces() -> set[str]:
    """Inodes of the network namespaces that exist: those of processes and those bind-mounted
    (ip netns, podman, docker); one may be missed (a namespace held only by an open descriptor),
    which costs it a rebuild, never a wrong answer."""
    out = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError):
                out.add(os.readlink(f"/proc/{pid}/ns/net")[5:-1])  # "net:[4026531840]"
    with contextlib.suppress(OSError), open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            if " - nsfs " in line and len(fields) > 3 and fields[3].startswith("net:["):
                out.add(fields[3][5:-1])
    return out


def _rmtree(path: str) -> None:
    """shutil.rmtree, errors ignored; shutil imported only here (this module is on every portmap
    exec's path, and a removal is rare there)."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _sweep(root: str, keep: str) -> None:
    try:
        names = os.listdir(root)
    except OSError:
        return
    live = live_namespaces() | {keep}
    for name in names:
        if name.isdigit() and name not in live:
            _rmtree(os.path.join(root, name))


def forget_namespace(key: str, root: str = ROOT) -> None:
    """Remove a namespace's whole index (the namespace is being deleted)."""
    _rmtree(os.path.join(root, key))
