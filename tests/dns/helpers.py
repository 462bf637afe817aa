"""A sandbox network with netkit-dns chained after netkit-bridge, and dig from inside its containers."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

from netkit.dns import control
from netkit.net import netns
from tests import sandbox as sb
from tests.sandbox import Namespace, Sandbox, bridge_conf

DOMAIN = "dns.netkit"
SUBNET = "10.20.0.0/24"
GATEWAY = "10.20.0.1"


@dataclass
class Attached:
    """A container attached with names; what its DEL needs."""

    ns: Namespace
    names: list[str]
    aliases: list[str]
    prev: dict[str, Any]
    result: dict[str, Any]
    network: str

    @property
    def ip(self) -> str:
        return str(ipaddress.ip_interface(self.prev["ips"][0]["address"]).ip)


@dataclass
class Dns:
    """Name resolution in a sandbox: attach containers with names, ask from inside them."""

    box: Sandbox
    data_dir: str

    def conf(self, prev: dict[str, Any] | None, aliases: dict[str, list[str]] | None = None,
             network: str = "testnet", **extra: Any) -> dict[str, Any]:
        conf: dict[str, Any] = {"cniVersion": "1.0.0", "name": network, "type": "netkit-dns",
                                "domainName": DOMAIN, "capabilities": {"aliases": True},
                                "runtimeConfig": {"aliases": aliases or {}}, "dataDir": self.data_dir,
                                "upstreams": []}
        if prev is not None:
            conf["prevResult"] = prev
        conf.update(extra)
        return conf

    def attach(self, name: str = "", aliases: list[str] | None = None, network: str = "testnet",
               subnet: str = SUBNET, bridge: str = "nkbr0", ns: Namespace | None = None, **extra: Any) -> Attached:
        """A new container on ``network`` named ``name`` (K8S_POD_NAME) with ``aliases``."""
        c = ns or self.box.container()
        args = f"IgnoreUnknown=1;K8S_POD_NAME={name}" if name else ""
        rc, prev = self.box.call("netkit-bridge", "ADD", bridge_conf(self.box, name=network, subnet=subnet,
                                                                     bridge=bridge), c, args=args)
        assert rc == 0, prev
        rc, out = self.box.call("netkit-dns", "ADD", self.conf(prev, {network: aliases or []}, network, **extra),
                                c, args=args)
        assert rc == 0, out
        return Attached(c, [name] if name else [], aliases or [], prev, out, network)

    def detach(self, a: Attached, **extra: Any) -> None:
        args = f"IgnoreUnknown=1;K8S_POD_NAME={a.names[0]}" if a.names else ""
        conf = self.conf(a.prev, {a.network: a.aliases}, a.network, **extra)
        assert self.box.call("netkit-dns", "DEL", conf, a.ns, args=args) == (0, None)

    def dig(self, ns: Namespace, name: str, qtype: str = "A", server: str = GATEWAY, *opts: str) -> list[str]:
        """``dig +short`` from inside ``ns``: the answer's lines (an error status: one line "status: X")."""
        proc = ns.run("dig", "+tries=2", "+time=2", f"@{server}", name, qtype, *opts)
        assert proc.returncode in (0, 9), proc.stdout + proc.stderr
        status = next((line.split("status: ")[1].split(",")[0] for line in proc.stdout.splitlines()
                       if "status: " in line), "no answer")
        if status != "NOERROR":
            return [f"status: {status}"]
        short = ns.run("dig", "+short", "+tries=2", "+time=2", f"@{server}", name, qtype, *opts)
        return short.stdout.split()

    def daemon_status(self) -> str | None:
        with netns.entered(self.box.host.path):
            return control.ask(self.data_dir, "status")


WIRE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wire.py")


def raw(ns: Namespace, data: bytes, proto: str = "udp", server: str = GATEWAY, port: int = 53) -> bytes | None:
    """The answer's bytes to ``data`` sent from inside ``ns`` (tests/dns/wire.py), or None."""
    out = ns.run(sys.executable, WIRE, "ask", proto, server, str(port), data.hex()).stdout.strip()
    return None if out in ("none", "") else bytes.fromhex(out)


def upstream(ns: Namespace, addr: str, port: int, mode: str = "answer") -> subprocess.Popen[str]:
    """A fake upstream resolver inside ``ns`` (tests/dns/wire.py); stop it with .kill()."""
    proc = subprocess.Popen([*ns.enter(), sys.executable, WIRE, "upstream", addr, str(port), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


@contextlib.contextmanager
def _serving(box: sb.Sandbox, tmp_path: os.PathLike[str]) -> Iterator[Dns]:
    helper = Dns(box, os.path.join(str(tmp_path), "dns"))
    try:
        yield helper
    finally:  # the daemon a test caused goes with it
        with netns.entered(box.host.path):
            control.stop(helper.data_dir)


@pytest.fixture
def dns(box: sb.Sandbox, tmp_path: os.PathLike[str]) -> Iterator[Dns]:
    """Name resolution in ``box`` (in-process and through the agent): its records directory."""
    with _serving(box, tmp_path) as helper:
        yield helper


@pytest.fixture
def dns_inproc(inproc: sb.Sandbox, tmp_path: os.PathLike[str]) -> Iterator[Dns]:
    """``dns`` with the plugins in-process only."""
    with _serving(inproc, tmp_path) as helper:
        yield helper
