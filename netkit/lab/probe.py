"""Reachability probes run from inside a network namespace: TCP connect, UDP echo, ICMP echo, HTTP GET,
and a DNS lookup through a given server (how a container resolves a name).

Each probe enters the namespace on its own thread (setns is per thread), so many probes run in
parallel from one process.  A probe answers ``(reached, detail)``; it never raises for a network
failure — an unreachable target is an answer, not an error.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import subprocess
from typing import NamedTuple

from netkit import errors
from netkit.net import netns

PAYLOAD = b"netkit-lab-probe"


class Outcome(NamedTuple):
    """What a probe saw."""

    reached: bool
    detail: str
    body: str = ""


def _tcp(addr: str, port: int, timeout: float) -> Outcome:
    try:
        with socket.create_connection((addr, port), timeout=timeout):
            return Outcome(True, "connected")
    except OSError as exc:
        return Outcome(False, exc.strerror or type(exc).__name__)


def _family(addr: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def _udp(addr: str, port: int, timeout: float) -> Outcome:
    with socket.socket(_family(addr), socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((addr, port))
            s.send(PAYLOAD)
            data = s.recv(len(PAYLOAD) + 16)
        except OSError as exc:
            return Outcome(False, exc.strerror or "no answer")
    return Outcome(data == PAYLOAD, "echoed" if data == PAYLOAD else f"unexpected answer {data!r}")


def _icmp(addr: str, timeout: float) -> Outcome:
    # ping(8) rather than a raw socket of our own: it is installed everywhere labs run, and a
    # subprocess forked from this thread starts in the namespace the thread entered.
    proc = subprocess.run(["ping", "-c", "1", "-W", str(max(1, round(timeout))), "-n", "-q", addr],
                          capture_output=True, text=True, check=False)
    return Outcome(proc.returncode == 0, "echo reply" if proc.returncode == 0 else "no echo reply")


def _http(addr: str, port: int, path: str, timeout: float) -> Outcome:
    conn = http.client.HTTPConnection(addr, port, timeout=timeout)  # port given: an IPv6 literal goes bare
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read(65536).decode(errors="replace").strip()
    except (OSError, http.client.HTTPException) as exc:
        return Outcome(False, getattr(exc, "strerror", None) or type(exc).__name__)
    finally:
        conn.close()
    return Outcome(resp.status == 200, f"HTTP {resp.status}", body)


def lookup(netns_path: str, server: str, name: str, family: int = 4, timeout: float = 2.0) -> tuple[list[str], str]:
    """Ask DNS ``server`` (from the namespace at ``netns_path``) for ``name``'s A (family 4) or AAAA records,
    as a container's resolver would: (addresses in the order answered, detail).  No answer is ([], why)."""
    import dnslib  # only labs with name checks need it

    qtype = "A" if family == 4 else "AAAA"
    query = dnslib.DNSRecord.question(name, qtype)
    try:
        with netns.entered(netns_path) if netns_path else contextlib.nullcontext():
            with socket.socket(_family(server), socket.SOCK_DGRAM) as s:
                s.settimeout(timeout)
                s.connect((server, 53))
                s.send(query.pack())
                reply = dnslib.DNSRecord.parse(s.recv(65535))
    except errors.CNIError as exc:
        return [], f"cannot enter {netns_path}: {exc.msg}"
    except OSError as exc:
        return [], f"{server}: {exc.strerror or 'no answer'}"
    except dnslib.DNSError as exc:
        return [], f"{server}: malformed answer ({exc})"
    rcode = dnslib.RCODE.get(reply.header.rcode)
    found = [str(rr.rdata) for rr in reply.rr if rr.rtype == getattr(dnslib.QTYPE, qtype)]
    return found, f"{qtype} {name} @{server}: {rcode}" + (f" {', '.join(found)}" if found else "")


def probe(netns_path: str, proto: str, addr: str, port: int = 0, timeout: float = 2.0, path: str = "/") -> Outcome:
    """Try to reach ``addr:port`` over ``proto`` from the namespace at ``netns_path`` ('' = this one)."""
    try:
        with netns.entered(netns_path) if netns_path else contextlib.nullcontext():
            if proto == "tcp":
                return _tcp(addr, port, timeout)
            if proto == "udp":
                return _udp(addr, port, timeout)
            if proto == "icmp":
                return _icmp(addr, timeout)
            return _http(addr, port, path, timeout)
    except errors.CNIError as exc:
        return Outcome(False, f"cannot enter {netns_path}: {exc.msg}")
