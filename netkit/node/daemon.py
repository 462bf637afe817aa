"""The loop of ``netkit node``: facts in, conflist and routes out, readiness, one log line per change.

A source is polled (``poll()``: a new Snapshot, or None when nothing changed); every snapshot is
applied whole and every ``resync`` seconds the last one is applied again, so a route someone deleted
comes back.  Nothing a bad input does stops the loop: a refused node or file is logged in one line
(once, not on every poll) and the last good facts stay in force until the input is fixed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

from netkit import errors, fileio
from netkit.firewall.backend import Backend
from netkit.firewall.model import RuleGroup
from netkit.node import conflist, hostsetup, masquerade, model, routes, snapshot

log = logging.getLogger("netkit.node")


class Source(Protocol):
    """Where the nodes come from."""

    def poll(self) -> snapshot.Snapshot | None:
        """The current facts when they changed since the last call, else None; SourceError."""
        ...


@dataclass
class Settings:
    """What ``netkit node`` was told: who it is, where the conflist and readiness file go."""

    node_name: str
    conf_dir: str
    ready_file: str = ""
    interval: float = 0.5
    resync: float = 30.0
    cluster_cidrs: tuple[model.Network, ...] = ()  # none: pod traffic is not masqueraded
    firewall: str = ""  # the firewall backend ("nftables", "iptables"); empty: as the host's iptables
    ipam_dir: str = ""  # the leases' directory in the conflist; empty: netkit-ipam's default


@dataclass
class State:
    """What the loop has done: the last facts applied, and which refusals were already logged."""

    last: snapshot.Snapshot | None = None
    conflist_written: bool = False
    ready: bool = False
    logged: set[str] = field(default_factory=set)
    source_error: str = ""
    # The IP versions forwarding and br_netfilter were last set up for (None: not yet), and what
    # failed then: a failure is retried at the next resync, not at every apply (a modprobe each).
    prepared: frozenset[int] | None = None
    prepare_failed: list[str] = field(default_factory=list)
    masq: RuleGroup | None = None  # the masquerade group in place
    masq_cleared: bool = False  # a group a previous run may have left was removed (or none wanted one)
    recheck: bool = False  # this apply is a resync: what was set up once is verified again


class Daemon:
    """Applies snapshots (``apply``) and runs the poll loop (``run`` until ``stop``)."""

    def __init__(self, settings: Settings, source: Source) -> None:
        self.settings = settings
        self.source = source
        self.state = State()
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by stop() or a source with news: poll now, not later
        self._backend: Backend | None = None

    def _firewall(self) -> Backend:
        if self._backend is None:
            from netkit.firewall import backend

            config = {backend.CONFIG_KEY: self.settings.firewall} if self.settings.firewall else {}
            self._backend = backend.choose(config, os.environ)
        return self._backend

    def _prepare(self, versions: frozenset[int]) -> list[str]:
        """Forwarding and br_netfilter, set up again when the versions change or at a resync
        (someone may have switched them off); what failed, a line each, stays until then."""
        if versions != self.state.prepared or self.state.recheck:
            changed, self.state.prepare_failed = hostsetup.prepare(set(versions))
            for line in changed:
                log.info("%s", line)
            self.state.prepared = versions
        return list(self.state.prepare_failed)

    def _host(self, me: model.Node) -> list[str]:
        """Forwarding, br_netfilter and masquerade for this node's pod subnets; refusals, a line each."""
        refused = self._prepare(frozenset(c.version for c in me.pod_cidrs))
        group: RuleGroup | None = None
        if self.settings.cluster_cidrs:
            group, outside = masquerade.rule_group(me.name, me.pod_cidrs, self.settings.cluster_cidrs)
            refused += outside
        try:
            if group is None:
                self._unmasquerade(me.name)
            elif group != self.state.masq or (self.state.recheck and not masquerade.in_place(self._firewall(), group)):
                # Until it is in: a failure is tried again at the next apply, and a group that
                # stops being wanted meanwhile is removed whatever of it is there.
                self.state.masq, self.state.masq_cleared = None, False
                masquerade.apply(self._firewall(), group)
                log.info("masquerade of %s leaving %s", ", ".join(group.sources),
                         ", ".join(str(a.network) for a in group.addresses))
                self.state.masq = group
            if group is not None:
                refused += self._forward_blocked(group)
        except errors.CNIError as exc:
            refused.append(f"masquerade: {exc}")
        return refused

    def _unmasquerade(self, name: str) -> None:
        """No group wanted: remove the one in place, and on the first apply the one a previous run
        (with another --cluster-cidr, or a podCIDR since moved outside it) may have left."""
        if self.state.masq is None and self.state.masq_cleared:
            return
        masquerade.remove(self._firewall(), name)  # idempotent: nothing there is fine
        if self.state.masq is not None:
            log.info("masquerade removed")
        self.state.masq = None
        self.state.masq_cleared = True

    def _forward_blocked(self, group: RuleGroup) -> list[str]:
        """A line when another firewall's forward chain drops by default what this backend cannot
        let through: pods of other nodes would not reach this node's pods, nor its pods leave."""
        blockers = self._firewall().forward_blockers(frozenset(a.version for a in group.addresses))
        if not blockers:
            return []
        return [f"forwarded pod traffic is dropped by {'; '.join(blockers)}: accept traffic to and from "
                f"{', '.join(group.sources)} there"]

    def _refuse(self, lines: list[str]) -> None:
        # One line per refusal while it lasts: a poll every half second must not repeat it.
        current = set(lines)
        for line in lines:
            if line not in self.state.logged:
                log.warning("%s", line)
        for gone in self.state.logged - current:
            log.info("resolved: %s", gone)
        self.state.logged = current

    def _conflist(self, me: model.Node) -> list[str]:
        path = os.path.join(self.settings.conf_dir, conflist.FILE_NAME)
        try:
            if conflist.write(self.settings.conf_dir, me.pod_cidrs, self.settings.ipam_dir, self.settings.firewall):
                log.info("wrote %s for %s", path, ", ".join(map(str, me.pod_cidrs)))
        except (OSError, errors.CNIError) as exc:
            # Atomic: the old file (or none) stays whole; the routes below are still kept.
            return [f"cannot write {path}: {exc}"]
        self.state.conflist_written = True
        return []

    def apply(self, snap: snapshot.Snapshot) -> None:
        """Make the conflist and the routes say what ``snap`` says."""
        self.state.last = snap
        refused = list(snap.refused)
        me = snap.nodes.get(self.settings.node_name)
        if me is None:
            refused.append(f"node {self.settings.node_name} (this node) is not in the cluster's nodes yet")
        elif not me.pod_cidrs:
            refused.append(f"node {me.name} (this node) has no podCIDR yet: no conflist")
        else:
            refused += self._conflist(me)
        if me is not None and me.pod_cidrs:
            refused += self._host(me)
        wants, unroutable = routes.plan(self.settings.node_name, snap.nodes.values())
        outcome = routes.sync(wants)
        for line in outcome.changes:
            log.info("%s", line)
        self._refuse(refused + unroutable + outcome.refused + self._ready())

    def _ready(self) -> list[str]:
        """Ready once pods can be given addresses: the conflist is there and routes were synced
        once.  Ready only once the file is written: a failed write is a line, tried again."""
        if self.state.ready or not self.state.conflist_written:
            return []
        if self.settings.ready_file:
            try:
                fileio.ensure_dir(os.path.dirname(os.path.abspath(self.settings.ready_file)))
                fileio.write_atomic(self.settings.ready_file, b"ready\n", durable=False)
            except (OSError, errors.CNIError) as exc:
                return [f"cannot write the ready file {self.settings.ready_file}: {exc}"]
        self.state.ready = True
        log.info("ready")
        return []

    def step(self) -> None:
        """One poll: apply new facts, unless they equal the last applied ones (a Node's heartbeat
        changes nothing netkit uses; the periodic resync re-applies anyway)."""
        try:
            snap = self.source.poll()
        except Exception as exc:  # noqa: BLE001 - a source's surprise must not end the daemon
            line = str(exc) if isinstance(exc, snapshot.SourceError) else \
                f"reading the nodes failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            if line != self.state.source_error:
                log.warning("%s (keeping the last good facts)", line)
            self.state.source_error = line
            return
        if self.state.source_error and snap is not None:
            log.info("source readable again")
            self.state.source_error = ""
        if snap is not None and snap != self.state.last:
            self.safely(snap)

    def safely(self, snap: snapshot.Snapshot) -> None:
        """``apply``, a failure (a read-only conf dir, netlink refusing) logged in one line and tried
        again at the next resync: the process outlives what the machine does to it."""
        try:
            self.apply(snap)
        except Exception as exc:  # noqa: BLE001 - a long-lived daemon logs, keeps its facts, retries
            line = f"applying the nodes failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            self._refuse(sorted(self.state.logged | {line}))

    def run(self) -> None:
        """Poll until ``stop()``; the readiness file goes when the loop ends (and one a crashed
        run left goes at the start: this run is not ready until it says so)."""
        self._unready()
        next_resync = time.monotonic() + self.settings.resync
        try:
            while not self._stop.is_set():
                self.step()
                if time.monotonic() >= next_resync and self.state.last is not None:
                    # Applied again, what was set up verified: routes, rules or sysctls someone
                    # removed come back (and only then is a line logged).
                    self.state.recheck = True
                    try:
                        self.safely(self.state.last)
                    finally:
                        self.state.recheck = False
                    next_resync = time.monotonic() + self.settings.resync
                self._wake.wait(self.settings.interval)
                self._wake.clear()
        finally:
            self._unready()

    def _unready(self) -> None:
        if self.settings.ready_file:
            try:
                os.unlink(self.settings.ready_file)
            except FileNotFoundError:
                pass

    def stop(self) -> None:
        """End ``run`` after the current step (a signal handler may call it)."""
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        """Poll the source now (a source that learns of a change in the background calls it)."""
        self._wake.set()
