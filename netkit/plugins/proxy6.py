"""Published ports on ``[::1]``: a small userland proxy per attachment (Docker's docker-proxy, for the
one address NAT cannot serve).

Why a process: a connection to [::1]:PORT can be DNAT'd to the container and its source masqueraded,
but the container's replies are un-NAT'd back to ::1 as they arrive on the bridge, and IPv6 has no
``route_localnet``: the kernel drops them (Ip6InNoRoutes).  Docker serves loopback through its
userland proxy; netkit keeps NAT for every other address (the client's address preserved, nothing
in the path) and proxies [::1] only, for attachments with an IPv6 address (an IPv4-only one is not
published on IPv6 at all).

Lifecycle.  ADD starts it once the rules are in (``publish.publish``): detached (its own session,
forked twice, so a long-lived agent keeps no zombie), ready once its sockets are bound; a [::1]
port something else already holds is left to that (NAT still serves the other addresses), unless
the mapping asked for [::1] alone: then ADD fails, the port is allocated.  Its
record, ``<netns inode>-<DNAT chain>`` under DIR, says ``pid start-time``.  DEL (``unpublish``) and
GC stop it; a proxy whose attachment went without a DEL (the container's namespace deleted) sees
the host-side veth go and exits by itself.  Either way the record goes with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

from netkit import errors, fileio, paths, procinfo
from netkit.firewall import ports
from netkit.firewall.model import DNAT, RuleGroup, network_prefix

DIR = f"{paths.RUN_DIR}/proxy6"
# The child: no site import (the parent's sys.path handed over, as the plugin launchers do).
_BOOT = ("import sys, json; sys.path[:0] = json.loads(sys.argv[1]); "
         "from netkit.plugins.proxy6_process import main; main(sys.argv[2])")


def _record(chain: str, key: str = "") -> str:
    return os.path.join(DIR, f"{key or ports.namespace_key()}-{chain}")


def _proxied(group: RuleGroup) -> list[list]:
    """[host port, container port, protocol, label] of the mappings the proxy serves (those covering
    [::1], of an attachment with an IPv6 address)."""
    if not any(a.version == 6 for a in group.addresses):
        return []
    return [[m.host_port, m.container_port, m.protocol, m.label()] for m in group.mappings
            if m.loopback6 and m.protocol in ("tcp", "udp")]


def _recorded(chain: str, key: str = "") -> tuple[int, str] | None:
    """The (pid, start time) the attachment's proxy record says; None without a readable one."""
    try:
        with open(_record(chain, key), encoding="ascii") as f:
            pid_text, start_time = f.read().split()
        return int(pid_text), start_time
    except (OSError, ValueError):
        return None


def alive(chain: str, key: str = "") -> bool:
    """True when the attachment's proxy runs (its recorded process, not a reused PID)."""
    recorded = _recorded(chain, key)
    return recorded is not None and procinfo.start_time(recorded[0]) == recorded[1]


def check(group: RuleGroup) -> None:
    """CHECK: fail when the group's [::1] mappings have no proxy running."""
    if _proxied(group) and not alive(group.chain):
        raise errors.CNIError(errors.CHECK_FAILED, "the [::1] proxy of the published ports is not running",
                              f"record {_record(group.chain)}")


def start(group: RuleGroup, watch: str | None) -> None:
    """Proxy the group's mappings that cover [::1] to its IPv6 address (nothing without one);
    ``watch``: the host-side interface whose removal ends the proxy."""
    target = next((a for a in group.addresses if a.version == 6), None)
    mappings = _proxied(group)
    if target is None or not mappings:
        return
    # Here, not at the top: every DEL imports this module (stop), few ADDs start a proxy.
    import json
    import subprocess

    stop(group.chain)  # a re-ADD's
    fileio.ensure_dir(DIR)
    config = {"target": str(target.ip), "mappings": mappings, "watch": watch or "", "record": _record(group.chain)}
    try:
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _BOOT, json.dumps([p for p in sys.path if p]),
                                 json.dumps(config)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        raise errors.CNIError(errors.KERNEL, "failed to start the [::1] proxy", str(exc)) from None
    assert proc.stdout is not None
    with proc.stdout:
        line = proc.stdout.readline().decode(errors="replace")  # the proxy's "ready", or nothing if it died
    proc.wait()  # the first fork only: it exits once the proxy is forked off
    if not line.startswith("ready "):
        raise errors.CNIError(errors.KERNEL, "the [::1] proxy failed to start", config["record"])
    # A port something else holds on [::1]: for a mapping on every address that is the holder's
    # (NAT serves the other addresses); a mapping asked for on [::1] alone would have no effect.
    explicit = [label for label in json.loads(line[len("ready "):]) if "/::1/" in label]
    if explicit:
        stop(group.chain)
        raise errors.CNIError(errors.PORT_ALLOCATED, f"port is already allocated: {explicit[0]}",
                              "something else listens on it")


def stop(chain: str, key: str = "") -> None:
    """Stop the attachment's proxy (the recorded process only, never a reused PID); none is fine."""
    path = _record(chain, key)
    recorded = _recorded(chain, key)
    if recorded is None:
        return
    pid, start_time = recorded
    if procinfo.start_time(pid) == start_time:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        # Until it is gone: a re-ADD binds the same ports next.  It exits at once on SIGTERM.
        for _ in range(200):
            if procinfo.start_time(pid) != start_time:
                break
            time.sleep(0.01)
    with contextlib.suppress(OSError):
        os.unlink(path)


def gc(network: str, valid: set[tuple[str, str]]) -> None:
    """Stop this namespace's proxies of ``network`` whose attachment is not in ``valid``."""
    from netkit.firewall.model import group_chain

    key = ports.namespace_key()
    keep = {group_chain(DNAT, network, cid, ifname) for cid, ifname in valid}
    prefix = f"{key}-{network_prefix(DNAT, network)}"
    try:
        names = os.listdir(DIR)
    except OSError:
        return
    for name in names:
        chain = name[len(key) + 1:]
        if name.startswith(prefix) and chain not in keep:
            stop(chain, key)


def forget_namespace(key: str) -> None:
    """Stop every proxy of the namespace whose key is ``key`` and drop its records: the namespace is
    being deleted (a proxy in it would keep it alive, and a record of a proxy killed with it would
    outlive both), as firewall.ports.forget_namespace does for its port index."""
    try:
        names = os.listdir(DIR)
    except OSError:
        return
    for name in names:
        if name.startswith(f"{key}-"):
            stop(name[len(key) + 1:], key)
