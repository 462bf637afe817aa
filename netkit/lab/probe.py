"""Reachability probes run from inside a network namespace: TCP connect, UDP echo, ICMP echo, HTTP GET.

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


def _udp(addr: str, port: int, timeout: float) -> Outcome:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
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
    conn = http.client.HTTPConnection(addr, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read(65536).decode(errors="replace").strip()
    except (OSError, http.client.HTTPException) as exc:
        return Outcome(False, getattr(exc, "strerror", None) or type(exc).__name__)
    finally:
        conn.close()
    return Outcome(resp.status == 200, f"HTTP {resp.status}", body)


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
