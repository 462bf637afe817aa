"""Throwaway network namespaces: a named namespace to run commands in, and the set of them one run
makes (all under one prefix), deleted at the end so that none is left on the machine."""

from __future__ import annotations

import json
import secrets
import subprocess
from dataclasses import dataclass
from typing import Any

from harness import HarnessError
from netkit.firewall import ports
from netkit.plugins import proxy6


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """iproute2's ``ip`` with an argument list (never a shell)."""
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def netns_names() -> set[str]:
    """Names of the named network namespaces (/run/netns)."""
    return {line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()}


def root_links() -> dict[str, str]:
    """Links of the root namespace: name -> kind (read only)."""
    out = ip("-j", "-d", "link", "show").stdout
    return {link["ifname"]: link.get("linkinfo", {}).get("info_kind", "") for link in json.loads(out or "[]")}


@dataclass
class Netns:
    """A named network namespace under /run/netns, or one bound elsewhere (``bound_at``)."""

    name: str
    bound_at: str = ""  # a namespace bound outside /run/netns (a runtime's): entered with nsenter

    @property
    def path(self) -> str:
        return self.bound_at or f"/run/netns/{self.name}"

    def enter(self) -> list[str]:
        """The argv prefix that runs a command inside the namespace."""
        return ["nsenter", f"--net={self.bound_at}"] if self.bound_at else ["ip", "netns", "exec", self.name]

    def run(self, *argv: str, timeout: float = 20, **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace; the caller checks the status (or passes check=True)."""
        return subprocess.run([*self.enter(), *argv], capture_output=True, text=True, timeout=timeout, **kw)

    def links(self) -> list[str]:
        """Interface names in the namespace."""
        return [link["ifname"] for link in json.loads(self.run("ip", "-j", "link", "show").stdout or "[]")]

    def addresses(self, ifname: str) -> list[str]:
        """``addr/prefix`` strings on ``ifname`` (global scope)."""
        out = self.run("ip", "-j", "addr", "show", "dev", ifname, "scope", "global").stdout
        return [f"{a['local']}/{a['prefixlen']}" for link in json.loads(out or "[]")
                for a in link["addr_info"] if "local" in a]


def _batch(verb: str, names: list[str]) -> str:
    """``ip netns VERB`` for every name in one ``ip`` process (a benchmark makes hundreds)."""
    proc = subprocess.run(["ip", "-force", "-batch", "-"], input="".join(f"netns {verb} {n}\n" for n in names),
                          capture_output=True, text=True, timeout=600)
    return proc.stderr.strip()[:300]


class Namespaces:
    """The namespaces of one run, all named ``TAG-...`` with a tag no existing namespace carries.

    ``close()`` deletes them newest first (containers before their hosts), then anything else
    carrying the tag (one made just as Ctrl-C arrived), and reports what could not be deleted.
    """

    def __init__(self, prefix: str) -> None:
        while True:
            self.tag = f"{prefix}{secrets.token_hex(3)}"
            if not any(n.startswith(self.tag) for n in netns_names()):
                break
        self.live: list[str] = []          # created and not yet deleted, oldest first
        self.problems: list[str] = []      # what close() (or delete(strict=False)) could not undo

    def add(self, *names: str, lo: bool = False) -> list[Netns]:
        """Create ``names`` (each ``lo`` up if asked); raises HarnessError if any is missing after."""
        err = _batch("add", list(names))
        have = netns_names()
        self.live += [n for n in names if n in have]
        missing = [n for n in names if n not in have]
        if missing:
            raise HarnessError(f"ip netns add failed for {missing[:3]}: {err}")
        for n in names if lo else ():
            proc = ip("-n", n, "link", "set", "lo", "up", check=False)
            if proc.returncode != 0:
                raise HarnessError(f"bringing lo up in {n} failed: {proc.stderr.strip()}")
        return [Netns(n) for n in names]

    def delete(self, *names: str, strict: bool = True) -> None:
        """Delete ``names`` of ours; one left raises HarnessError (``strict``) or is a problem."""
        names = tuple(n for n in names if n in self.live)
        if not names:
            return
        # The host-wide port index keeps a directory per namespace that published a port (keyed by
        # its inode): a benchmark's sandbox hosts must not leave theirs in /run/netkit/ports.
        keys = {}
        for n in names:
            try:
                keys[n] = ports.namespace_key(f"/run/netns/{n}")
            except OSError:
                pass
        for key in keys.values():
            proxy6.forget_namespace(key)  # its [::1] proxies would keep the namespace alive
        err = _batch("del", list(names))
        have = netns_names()
        for n, key in keys.items():
            if n not in have:
                ports.forget_namespace(key)
        self.live = [n for n in self.live if n not in names or n in have]
        left = [n for n in names if n in have]
        if left and strict:
            raise HarnessError(f"ip netns del failed for {left[:3]}: {err}")
        if left:
            self.problems.append(f"ip netns del failed for {left[:3]}: {err}")

    def close(self) -> list[str]:
        """Delete every namespace of the run; the problems met (none: nothing of ours is left)."""
        self.delete(*reversed(self.live), strict=False)
        self.live += sorted(n for n in netns_names() if n.startswith(self.tag + "-") and n not in self.live)
        self.delete(*self.live, strict=False)
        left = sorted(n for n in netns_names() if n.startswith(self.tag))
        if left:
            self.problems.append(f"namespaces still present after cleanup: {', '.join(left[:10])}")
        return self.problems


def wire(host: Netns, machine: Netns, host_addrs: list[str], addr: str) -> None:
    """Another machine on a link to ``host``: a veth pair, ``uplink0`` in the host with ``host_addrs``
    (the first is its main address), ``eth0`` in ``machine`` with ``addr``; all /24, both ends up."""
    host.run("ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "eth0", "netns", machine.name, check=True)
    for host_addr in host_addrs:
        host.run("ip", "addr", "add", f"{host_addr}/24", "dev", "uplink0", check=True)
    host.run("ip", "link", "set", "uplink0", "up", check=True)
    machine.run("ip", "addr", "add", f"{addr}/24", "dev", "eth0", check=True)
    machine.run("ip", "link", "set", "eth0", "up", check=True)
