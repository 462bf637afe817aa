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
    prepared: frozenset[int] = frozenset()  # IP versions forwarding and br_netfilter were set up for
    masq: RuleGroup | None = None  # the masquerade group in place


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

    def _host(self, me: model.Node) -> list[str]:
        """Forwarding, br_netfilter and masquerade for this node's pod subnets; refusals, a line each."""
        versions = frozenset(c.version for c in me.pod_cidrs)
        refused: list[str] = []
        if versions != self.state.prepared:
            changed, failed = hostsetup.prepare(set(versions))
            for line in changed:
                log.info("%s", line)
            refused += failed
            if not failed:
                self.state.prepared = versions
        if not self.settings.cluster_cidrs:
            return refused
        group, outside = masquerade.rule_group(me.name, me.pod_cidrs, self.settings.cluster_cidrs)
        refused += outside
        if group == self.state.masq:
            return refused
        try:
            if group is None:
                masquerade.remove(self._firewall(), me.name)
                log.info("masquerade removed")
            else:
                masquerade.apply(self._firewall(), group)
                log.info("masquerade of %s leaving %s", ", ".join(group.sources),
                         ", ".join(str(a.network) for a in group.addresses))
            self.state.masq = group
        except errors.CNIError as exc:
            refused.append(f"masquerade: {exc}")
        return refused

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
            if conflist.write(self.settings.conf_dir, me.pod_cidrs, self.settings.ipam_dir):
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
        self._refuse(refused + unroutable + outcome.refused)
        self._ready()

    def _ready(self) -> None:
        # Ready once pods can be given addresses: the conflist is there and routes were synced once.
        if self.state.ready or not self.state.conflist_written:
            return
        self.state.ready = True
        if self.settings.ready_file:
            fileio.ensure_dir(os.path.dirname(os.path.abspath(self.settings.ready_file)))
            fileio.write_atomic(self.settings.ready_file, b"ready\n", durable=False)
        log.info("ready")

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
        """Poll until ``stop()``; the readiness file goes when the loop ends."""
        next_resync = time.monotonic() + self.settings.resync
        try:
            while not self._stop.is_set():
                self.step()
                if time.monotonic() >= next_resync and self.state.last is not None:
                    self.state.masq = None  # applied again: rules someone flushed come back
                    self.safely(self.state.last)
                    next_resync = time.monotonic() + self.settings.resync
                self._wake.wait(self.settings.interval)
                self._wake.clear()
        finally:
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
