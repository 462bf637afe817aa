"""What is on a machine that netkit (or a test of it) could have made, and what changed between two looks.

``snapshot()`` reads one network namespace (the machine's own unless a path is given) and a few
directories; ``changes(before, after)`` lists what is new, gone or different, one readable line each.
The suite takes a snapshot when the session starts and compares at the end, so what was already on
the machine (the demo's ``inet netkit`` table, ``netkit0``, ``ip_forward=1``) is not the suite's,
while anything the suite adds or changes, also inside something that was there, is reported.

Looked at, in the namespace: links; their permanent addresses; the forwarding and route_localnet
sysctls netkit sets; every nft table by name, and every chain, rule, set and map of netkit's own
tables (``netkit`` of any family) without handles or counters; legacy iptables lines naming netkit
(its python-iptables backend writes only there).  On the file system: the files under netkit's
default directories (lock files excepted: they are made once and never removed, as
/run/xtables.lock is), and mounts under given directories.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

from harness.procs import mount_table
from netkit.firewall import ports
from netkit.net import netns as nsmod
from netkit.net import sysctl

# netkit's default places: agent socket, locks, port index and lab state; plugins; configs; runtime root.
WATCHED_DIRS = ("/run/netkit", "/opt/cni", "/etc/cni", "/var/lib/netkit")
_SYSCTLS = ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding", "net/ipv6/conf/default/forwarding")
_FOREVER = 4294967295  # an address's valid_lft when it is not a DHCP/SLAAC lease that may change by itself
_COUNTERS = re.compile(r" \[\d+:\d+\]$")


@dataclass(frozen=True)
class Snapshot:
    """One look at a namespace and the watched directories; each field maps a key to a readable line."""

    links: Mapping[str, str]
    addresses: Mapping[str, str]
    sysctls: Mapping[str, str]
    nft: Mapping[str, str]
    legacy: Mapping[str, str]
    files: Mapping[str, str]
    mounts: Mapping[str, str]


def _run(*argv: str) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else ""


def _links_and_addresses() -> tuple[dict[str, str], dict[str, str]]:
    links = {f"link {link['ifname']}": f"link {link['ifname']}" for link in json.loads(_run("ip", "-j", "link") or "[]")}
    addrs = {}
    for link in json.loads(_run("ip", "-j", "addr") or "[]"):
        for a in link.get("addr_info", []):
            if a.get("scope") == "global" and a.get("valid_life_time", _FOREVER) == _FOREVER:
                line = f"address {a['local']}/{a['prefixlen']} on {link['ifname']}"
                addrs[line] = line
    return links, addrs


def _sysctls() -> dict[str, str]:
    """The values netkit's plugins set: forwarding, and route_localnet on each link (published ports
    answering on 127.0.0.1).  /proc/sys/net follows the reading thread's namespace."""
    keys = list(_SYSCTLS)
    with contextlib.suppress(OSError):
        keys += [f"net/ipv4/conf/{name}/route_localnet" for name in sorted(os.listdir("/proc/sys/net/ipv4/conf"))]
    return {k: v for k in keys if (v := sysctl.read(k)) is not None}


def _strip(obj: Any) -> Any:
    """An nft JSON object without what changes by itself: handles, counter values, set timeouts."""
    if isinstance(obj, dict):
        if "counter" in obj and isinstance(obj["counter"], dict):
            return {"counter": None}
        return {k: _strip(v) for k, v in obj.items() if k not in ("handle", "expires", "packets", "bytes")}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _nft() -> dict[str, str]:
    out: dict[str, str] = {}
    objects = json.loads(_run("nft", "-j", "list", "ruleset") or '{"nftables": []}')["nftables"]
    for item in objects:
        kind, body = next(iter(item.items()))
        if kind == "table":
            line = f"nft table {body['family']} {body['name']}"
            out[line] = line
            continue
        table = body.get("table", "")
        if kind == "metainfo" or "netkit" not in table:
            continue
        where = f"nft {body['family']} {table}"
        if kind == "rule":
            desc = body.get("comment") or json.dumps(_strip(body.get("expr")), separators=(",", ":"))[:120]
            line = f"{where}: rule in {body['chain']} ({desc})"
        else:
            line = f"{where}: {kind} {body.get('name', '')}"
        out[json.dumps(_strip(item), sort_keys=True)] = line
    return out


def _legacy() -> dict[str, str]:
    """Legacy xtables lines that name netkit (NK-... chains, jumps to them), per table, counters stripped."""
    out = {}
    for tool in ("iptables-legacy-save", "ip6tables-legacy-save"):
        table = ""
        for line in _run(tool).splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif "NK-" in line or "NETKIT" in line:
                entry = f"{tool.removesuffix('-save')} {table} {_COUNTERS.sub('', line)}"
                out[entry] = entry
    return out


def _files(dirs: Iterable[str], own_key: str) -> dict[str, str]:
    """Files under ``dirs``.  Directories are not listed (the port index root and /run/netkit are made
    once, as the lock files are).  Under the port index only the looked-at namespace's own entries:
    the others belong to other namespaces, whose inode numbers the kernel hands out again and again
    (a sandbox's stale entry is verified away by netkit like any other; a machine's is the machine's)."""
    out = {}
    for top in dirs:
        for d, subdirs, names in os.walk(top):
            if os.path.normpath(d) == os.path.normpath(ports.ROOT):
                subdirs[:] = [sub for sub in subdirs if sub == own_key]
            for name in names:
                if not name.endswith(".lock"):
                    line = f"file {os.path.join(d, name)}"
                    out[line] = line
    return out


def _mounts(under: Iterable[str]) -> dict[str, str]:
    roots = [os.path.normpath(u) for u in under if u]
    return {f"mount {target}": f"mount {target}" for target, _, _ in mount_table()
            if any(target == r or target.startswith(r + "/") for r in roots)}


@contextlib.contextmanager
def _inside(path: str | None) -> Iterator[None]:
    if path is None:
        yield
    else:
        with nsmod.entered(path):
            yield


def snapshot(netns: str | None = None, dirs: Iterable[str] = WATCHED_DIRS, mounts_under: Iterable[str] = ()) -> Snapshot:
    """Look at network namespace ``netns`` (a path; None = the machine's own), ``dirs`` (of the port
    index, that namespace's entries) and the mounts under ``mounts_under``."""
    with _inside(netns):
        # Children forked inside the block (nft, ip, iptables-legacy-save) start in the entered namespace.
        links, addresses = _links_and_addresses()
        sysctls = _sysctls()
        nft, legacy = _nft(), _legacy()
        own_key = ports.namespace_key()
    return Snapshot(links=links, addresses=addresses, sysctls=sysctls, nft=nft, legacy=legacy,
                    files=_files(dirs, own_key), mounts=_mounts(mounts_under))


def changes(before: Snapshot, after: Snapshot) -> list[str]:
    """What differs: new objects, vanished ones "(gone)", an object whose content changed under the
    same name "(changed)" (a set's elements, a chain's policy), sysctls with both values."""
    out = []
    for name in ("links", "addresses", "nft", "legacy", "files", "mounts"):
        old, new = getattr(before, name), getattr(after, name)
        added = [new[k] for k in new if k not in old]
        gone = [old[k] for k in old if k not in new]
        out += [f"{line} (changed)" if line in gone else line for line in added]
        out += [f"{line} (gone)" for line in gone if line not in added]
    for key in sorted(set(before.sysctls) & set(after.sysctls)):
        if before.sysctls[key] != after.sysctls[key]:
            out.append(f"sysctl {key.replace('/', '.')} {before.sysctls[key]} -> {after.sysctls[key]}")
    return out
