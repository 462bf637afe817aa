"""Named failpoints: crash or fail a plugin (or the agent) at one chosen step, for fault-injection tests.

Enabled only by the environment variable ``NETKIT_FAILPOINTS`` of the process that runs the
handler, read once when this module is first imported::

    NETKIT_FAILPOINTS=bridge.add.after-veth=error,ipam.add.after-reserve=kill

Actions:

=============  ==========================================================================================
``error``      raise :class:`FailpointError` (a CNIError, code 100): ADD's rollback runs, the caller
               gets the spec's error object naming the failpoint
``kill``       ``SIGKILL`` this process on the spot: a crash mid-operation, no rollback, no reply
``sleep:MS``   sleep MS milliseconds, then go on (widens a window for a test to act in)
=============  ==========================================================================================

Failpoints (every step of ADD, DEL and GC that leaves something behind if the process dies there):

====================================  ===================================================================
``bridge.add.after-bridge``           bridge ensured (created and up), nothing of the attachment made
``bridge.add.after-veth``             veth pair made, peer already inside the container, not on the bridge
``bridge.add.after-attach``           host veth on the bridge, up, alias set
``bridge.add.after-ipam``             the IPAM delegate returned: a lease is on disk
``bridge.add.after-gateway``          gateway address set on the bridge
``bridge.add.after-container``        addresses, link and routes set up inside the container
``bridge.add.after-network-rules``    the network's isolation/icc rules applied
``bridge.add.after-masq``             the attachment's masquerade group (ipMasq) applied
``bridge.add.after-dnat``             the attachment's DNAT group (published ports) applied
``bridge.del.after-ipam``             DEL: leases released, firewall and veth still there
``bridge.del.after-firewall``         DEL: firewall groups removed, veth still there
``bridge.del.after-container-veth``   DEL: container-side interface removed (its host peer went with it)
``bridge.gc.after-ipam``              GC: stale leases released, stale rules and veths still there
``bridge.gc.after-firewall``          GC: stale rule groups removed, stale veths still there
``ipam.add.before-lock``              IPAM ADD: config read, lease store not yet locked, nothing written
``ipam.add.after-reserve``            IPAM ADD: lease file written, round-robin position not yet, lock held
``ipam.add.after-allocate``           IPAM ADD: allocation complete and unlocked, result not yet returned
``ipam.del.after-release``            IPAM DEL: the first of the attachment's leases released
``portmap.add.after-publish``         netkit-portmap ADD: DNAT group applied, result not yet returned
``portmap.del.after-unpublish``       netkit-portmap DEL: DNAT group removed
``iptables.between-commits``          iptables backend: filter table (FORWARD accepts) committed, nat not yet
``agent.after-setns``                 agent: request read and the caller's namespace joined, handler not run
``agent.before-reply``                agent: handler finished (its changes are made), reply not yet sent
====================================  ===================================================================

Failpoints reached inside the agent obey the agent's own environment only: the agent strips
``NETKIT_FAILPOINTS`` from a request's environment, so no client can arm one in a running agent
(nor in the IPAM executable the agent delegates to).

With the variable unset (production) ``hit`` is one falsy check of a module global.
"""

from __future__ import annotations

import os
import signal
import time

from netkit import errors

ENV = "NETKIT_FAILPOINTS"
ACTIONS = ("error", "kill", "sleep")


class FailpointError(errors.CNIError):
    """The fault an ``error`` failpoint injects."""

    def __init__(self, name: str) -> None:
        super().__init__(errors.INTERNAL, f"injected fault at failpoint {name}", "NETKIT_FAILPOINTS")
        self.failpoint = name


def parse(spec: str) -> dict[str, tuple[str, float]]:
    """``name=action,...`` -> {name: (action, seconds)}; a malformed entry raises ValueError.

    Raising (rather than ignoring a typo) keeps a test from passing because its fault never fired.
    """
    out: dict[str, tuple[str, float]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, action = item.partition("=")
        kind, _, arg = action.partition(":")
        if not sep or not name or kind not in ACTIONS or (kind == "sleep") != bool(arg):
            raise ValueError(f"bad {ENV} entry {item!r}: want NAME=error|kill|sleep:MS")
        out[name] = (kind, float(arg) / 1000 if arg else 0.0)
    return out


# Parsed once per process: the agent's own environment, or the plugin executable's.
_ACTIVE: dict[str, tuple[str, float]] = parse(os.environ.get(ENV, ""))


def hit(name: str) -> None:
    """Act out failpoint ``name`` if it is armed in this process; otherwise do nothing."""
    if not _ACTIVE:
        return
    action = _ACTIVE.get(name)
    if action is None:
        return
    kind, seconds = action
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "sleep":
        time.sleep(seconds)
    else:
        raise FailpointError(name)
