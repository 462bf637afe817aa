"""The iptables backend's IPv6 half: ip6tables operations in a child process of their own.

Why a process: python-iptables cannot serve both families in one process.  An xtables extension
registers its targets for the family current when its library is first loaded, and DNAT and
MASQUERADE live in one library (libxt_NAT.so): once the IPv4 half has loaded it, IPv6 rules get
"can't find target DNAT".  A child that loads only the IPv6 extensions does the same operations
with the same code (``iptables.IptablesFamily(6)``: the layout, the comments, the FORWARD
accepts, the per-table commits and their rollback), so both families read alike to CHECK, GC and
conflict detection.  The alternative, the ``ip6tables-legacy-restore`` tool fed a script, would
have meant a second, text-based copy of that layout.

The child is a helper the process keeps while it is busy: each request (JSON) goes over a unix
socket pair with a descriptor of the caller's network namespace (a plugin thread of the agent has
joined the caller's), which the helper enters to serve it; a CNIError crosses as its code, message
and details.  One interpreter start and python-iptables load (~60-80 ms here) then serves the
three IPv6 operations of an ADD (network rules, masquerade, ports), and an agent's consecutive
ADDs; the helper exits after IDLE_S without a request (and when its parent goes: end of file), so
nothing lingers.  It is started only where IPv6 rules exist or are asked for.
"""

from __future__ import annotations

import array
import ipaddress
import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
from typing import Any

from netkit import errors
from netkit.firewall.model import NetworkRules, PortMapping, RuleGroup

IDLE_S = 1.0  # the helper exits after this long without a request
TIMEOUT_S = 30  # a helper that has not answered by then is hung (a lock, a kernel stall): killed
_MAX = 64 << 20  # a longer message is a framing error, not a request
_LEN = struct.Struct("=I")  # each message: its length, then its JSON
# What the helper runs: no site import (the parent's sys.path handed over, as the plugin
# launchers do), then this module's main().
_BOOT = "import sys, json; sys.path[:0] = json.loads(sys.argv[1]); from netkit.firewall.iptables6 import main; main()"
_lock = threading.Lock()  # one request at a time on the socket
_helper: tuple[subprocess.Popen[bytes], socket.socket] | None = None


def _group_json(group: RuleGroup) -> dict[str, Any]:
    return {"kind": group.kind, "network": group.network, "container_id": group.container_id, "ifname": group.ifname,
            "addresses": [str(a) for a in group.addresses], "mappings": [list(m) for m in group.mappings],
            "snat": group.snat, "masq_all": group.masq_all, "sources": group.sources}


def _group(raw: dict[str, Any]) -> RuleGroup:
    return RuleGroup(raw["kind"], raw["network"], raw["container_id"], raw["ifname"],
                     [ipaddress.ip_interface(a) for a in raw["addresses"]], [PortMapping(*m) for m in raw["mappings"]],
                     raw["snat"], raw["masq_all"], raw.get("sources", []))


def call(op: str, arg: Any = None) -> Any:
    """Run one operation of the IPv6 half (``IptablesFamily(6)``'s method ``op``) in the helper, in
    the calling thread's network namespace; its answer."""
    if isinstance(arg, RuleGroup):
        arg = _group_json(arg)
    elif isinstance(arg, NetworkRules):
        arg = arg._asdict()
    elif isinstance(arg, list) and all(isinstance(a, NetworkRules) for a in arg):
        arg = [a._asdict() for a in arg]
    elif isinstance(arg, set):
        arg = sorted(arg)
    request = json.dumps({"op": op, "arg": arg}).encode()
    netns = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        with _lock:
            # A helper that just exited (idle) answers nothing: the request goes to a new one.  Every
            # operation is idempotent, so one sent twice does no harm.
            for attempt in range(2):
                try:
                    raw = _exchange(request, netns)
                    break
                except _Broken as exc:
                    # Not an idle exit: what it did is unknown, asking again could hang again.
                    _kill()
                    raise errors.CNIError(errors.KERNEL, "ip6tables helper failed", str(exc)) from None
                except OSError as exc:
                    _reset()
                    if attempt:
                        raise errors.CNIError(errors.KERNEL, "ip6tables helper failed", str(exc)) from None
    finally:
        os.close(netns)
    answer = json.loads(raw)
    if "error" in answer:
        code, msg, details = answer["error"]
        raise errors.CNIError(code, msg, details)
    return answer["result"]


def _exchange(request: bytes, netns: int) -> bytes:
    """Send one request with the namespace's descriptor to the helper (started if none); its answer."""
    global _helper
    if _helper is None or _helper[0].poll() is not None:
        _reset()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # stderr too: whatever goes wrong in it crosses as an error answer (or none), never as
            # text on the plugin's stderr.
            proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _BOOT, json.dumps([p for p in sys.path if p])],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    pass_fds=(theirs.fileno(),), env={**os.environ, "NETKIT_IP6_FD": str(theirs.fileno())})
        finally:
            theirs.close()
        # Blocking, so MSG_WAITALL reads whole messages, but never forever.
        for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
            ours.setsockopt(socket.SOL_SOCKET, option, struct.pack("ll", TIMEOUT_S, 0))
        _helper = (proc, ours)
    sock = _helper[1]
    message = _LEN.pack(len(request)) + request
    try:
        sent = sock.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [netns]))])
        sock.sendall(message[sent:])
    except (BlockingIOError, TimeoutError):
        raise _Broken(f"the ip6tables helper took no request in {TIMEOUT_S} s") from None
    return _receive(sock)


def _receive(sock: socket.socket) -> bytes:
    """One length-prefixed message; OSError at end of file."""
    return _exactly(sock, _LEN.unpack(_exactly(sock, _LEN.size))[0])


class _Broken(OSError):
    """The helper stopped answering (timeout) or broke off in the middle of a message."""


def _exactly(sock: socket.socket, n: int) -> bytes:
    """``n`` bytes (MSG_WAITALL on a blocking socket: fewer only at end of file, then OSError, or
    at the receive timeout, then _Broken)."""
    try:
        data = sock.recv(n, socket.MSG_WAITALL) if n else b""
    except (BlockingIOError, TimeoutError):
        raise _Broken(f"no answer from the ip6tables helper in {TIMEOUT_S} s") from None
    if data and len(data) != n:
        raise _Broken("the ip6tables helper broke off in the middle of a message")
    if len(data) != n:
        raise OSError("the ip6tables helper's peer closed the socket")
    return data


def _kill() -> None:
    """Kill the helper (hung or out of step) and reap it."""
    _reset(grace=0)


def _reset(grace: float = 10) -> None:
    """Forget the helper: close its socket (it exits at end of file) and reap it, killed after
    ``grace`` seconds."""
    global _helper
    if _helper is not None:
        proc, sock = _helper
        _helper = None
        sock.close()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _serve(request: dict[str, Any]) -> Any:
    from netkit.firewall.iptables import IptablesFamily

    fw, op, arg = IptablesFamily(6), request["op"], request["arg"]
    if op == "apply":
        return fw.apply(_group(arg))
    if op == "apply_network":
        return fw.apply_network(NetworkRules(**arg))
    if op == "sync_networks":
        return fw.sync_networks([NetworkRules(**a) for a in arg])
    if op == "remove_chains":
        return fw.remove_chains(set(arg))
    if op == "chains":
        return sorted(fw.chains())
    if op == "rule_comments":
        return fw.rule_comments()
    if op == "group_comments":
        return fw.group_comments(arg)
    if op == "forward_drops":
        from netkit.firewall import iptables_session

        with iptables_session.session(version=6) as s:
            return s.forward_drops(s.table("filter"))
    raise errors.CNIError(errors.INTERNAL, f"unknown ip6tables operation {op!r}")


def main() -> None:
    """The helper: requests from the socket pair until IDLE_S passes without one or the parent
    goes; each served in the namespace whose descriptor came with it."""
    from netkit.net import netns

    sock = socket.socket(fileno=int(os.environ["NETKIT_IP6_FD"]))
    while select.select([sock], [], [], IDLE_S)[0]:
        fds = array.array("i")
        try:
            data = _request(sock, fds)
        except Exception:  # noqa: BLE001 - a framing error: out of step with the parent, so end
            for fd in fds:
                os.close(fd)
            return
        if data is None:
            return  # the parent went
        try:
            if not fds:
                raise errors.CNIError(errors.INTERNAL, "ip6tables helper: no namespace came with the request")
            netns.setns_fd(fds[0])
            answer: dict[str, Any] = {"result": _serve(json.loads(data))}
        except errors.CNIError as exc:
            answer = {"error": [exc.code, exc.msg, exc.details]}
        except OSError as exc:
            answer = {"error": [errors.KERNEL, "ip6tables helper failed", str(exc)]}
        except Exception as exc:  # noqa: BLE001 - python-iptables' own errors, a bug: an answer, not a traceback
            answer = {"error": [errors.INTERNAL, "ip6tables helper failed", f"{type(exc).__name__}: {exc}"]}
        finally:
            for fd in fds:
                os.close(fd)
        reply = json.dumps(answer).encode()
        sock.sendall(_LEN.pack(len(reply)) + reply)


def _request(sock: socket.socket, fds: array.array) -> bytes | None:
    """One request's bytes (None at end of file), the descriptors that came with it put in ``fds``;
    an exception when the framing is broken."""
    # The descriptor rides with the first bytes of the request.
    head, ancillary, _, _ = sock.recvmsg(_LEN.size, socket.CMSG_SPACE(array.array("i").itemsize))
    if not head:
        return None
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    length = _LEN.unpack(head + _exactly(sock, _LEN.size - len(head)))[0]
    if length > _MAX:
        raise ValueError(f"ip6tables helper: a {length}-byte request")
    return _exactly(sock, length)
