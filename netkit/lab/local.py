"""The local backend: a lab on this machine, each host a network namespace with its own netkit root.

State lives under ``<state dir>/<lab name>/`` (a tmpfs by default: namespaces do not survive a
reboot either): ``lab.json`` names every namespace before anything is made, so ``down`` can
remove a half-built lab, and ``hosts/<host>/`` is each host's netkit root.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any, Callable

from netkit import errors, fileio, paths
from netkit.firewall import ports as port_index
from netkit.lab import fabric
from netkit.lab.scenario import Scenario, ScenarioError
from netkit.net import netns
from netkit.plugins import proxy6
from netkit.runtime import containers, ports, state
from netkit.runtime.root import Root

DEFAULT_STATE_DIR = f"{paths.RUN_DIR}/lab"
PROVISION_TIMEOUT = 300


class LocalLab:
    """Where one lab's namespaces, roots and state are on this machine."""

    def __init__(self, sc: Scenario, name: str = "", state_dir: str = "") -> None:
        self.sc = sc
        self.name = name or sc.name
        self.dir = os.path.join(state_dir or DEFAULT_STATE_DIR, self.name)
        self.fabric_ns = os.path.join(fabric.NETNS_DIR, f"nkl-{self.name}.fabric")

    def host_ns(self, host: str) -> str:
        """The host's namespace, visible to ``ip netns`` as nkl-<lab>-<host>."""
        return os.path.join(fabric.NETNS_DIR, f"nkl-{self.name}-{host}")

    def root(self, host: str) -> Root:
        """The host's netkit root."""
        return Root(os.path.join(self.dir, "hosts", host))

    def built(self) -> bool:
        """True when ``up`` ran (at least partly) for this lab."""
        return os.path.exists(os.path.join(self.dir, "lab.json"))

    def require_built(self) -> None:
        """Refuse to look at a lab that is not up."""
        if not self.built():
            raise ScenarioError(f"lab {self.name} is not up (run: netkit lab up {self.sc.path})")

    # -- resolution of check endpoints -------------------------------------------------------

    def _record(self, host: str, container: str) -> state.Container:
        rec = state.refresh(state.find(self.root(host), container))
        if not state.alive(rec):
            raise errors.CNIError(errors.UNKNOWN_CONTAINER, f"container {host}/{container} is not running")
        return rec

    def netns_of(self, ref: str) -> str:
        """The namespace a probe from HOST or HOST/CONTAINER runs in."""
        host, _, container = ref.partition("/")
        if not container:
            return self.host_ns(host)
        rec = self._record(host, container)
        return rec.netns or self.host_ns(host)  # host mode: the host's own namespace

    def address_of(self, ref: str, from_host: str, family: int = 4) -> str:
        """The address of ``family`` of HOST, HOST@LINK, HOST/CONTAINER (on its first network), or a literal."""
        host, _, container = ref.partition("/")
        host, _, link = host.partition("@")
        if host not in self.sc.hosts:
            return ref
        if not container:
            return self.sc.address_of(host, from_host, link, family)
        rec = self._record(host, container)
        if rec.net_kind == "container":
            rec = state.find(self.root(host), rec.owner)
        if rec.net_kind == "host":
            return self.sc.address_of(host, from_host, family=family)
        mine = [a.split("/")[0] for a in rec.addresses if (":" in a) == (family == 6)]
        if not mine:
            raise errors.CNIError(errors.INVALID_CONFIG, f"container {host}/{container} has no IPv{family} "
                                                         f"address (net: {rec.network})")
        return mine[0]

    def resolver_of(self, ref: str) -> str:
        """The DNS server HOST/CONTAINER's resolv.conf names first (its network's embedded resolver)."""
        host, _, container = ref.partition("/")
        rec = self._record(host, container)
        try:
            with open(os.path.join(self.root(host).container_dir(rec.id), "resolv.conf"), encoding="utf-8") as f:
                servers = [line.split()[1] for line in f if line.startswith("nameserver") and len(line.split()) > 1]
        except OSError:
            servers = []
        if not servers:
            raise errors.CNIError(errors.INVALID_CONFIG, f"container {ref} has no DNS server in its resolv.conf")
        return servers[0]

    def published_port(self, host: str, spec: str) -> int:
        """The host port ``host`` published for CONTAINER/PORT[/PROTO]."""
        name, port, proto = (spec.split("/") + ["tcp"])[:3]
        for m in self._record(host, name).ports:
            if m["containerPort"] == int(port) and m["protocol"] == proto:
                return int(m["hostPort"])
        raise errors.CNIError(errors.INVALID_CONFIG, f"container {host}/{name} publishes no {port}/{proto}")

    # -- lifecycle -----------------------------------------------------------------------------

    def _write_state(self) -> None:
        fileio.ensure_dir(self.dir)
        doc = {"name": self.name, "scenario": os.path.abspath(self.sc.path), "fabric": self.fabric_ns,
               "hosts": {h: {"netns": self.host_ns(h), "root": self.root(h).path} for h in self.sc.hosts}}
        fileio.write_atomic(os.path.join(self.dir, "lab.json"), json.dumps(doc, indent=2).encode())

    def provision_argv(self, host: str) -> list[str]:
        """The per-host provisioning command run inside the host's namespace (as a Vagrant box runs it)."""
        # A process of its own started by nsenter, not a thread of ours that setns()es: the runtime
        # forks container supervisors and names /proc/self/ns/net, which must be the host's for the
        # whole process.  nsenter keeps the mount namespace (unlike `ip netns exec`).
        return ["nsenter", f"--net={self.host_ns(host)}", sys.executable, "-m", "netkit",
                "--root", self.root(host).path, "lab", "up", os.path.abspath(self.sc.path),
                "--host", host, "--name", self.name]

    def up(self, fabric_only: bool = False, say: Callable[[str], None] = print) -> None:
        """Build the lab, or converge it to the scenario if it is already up."""
        self._write_state()  # first: a failure below still leaves down() everything it needs
        fabric.build(self.sc, {h: self.host_ns(h) for h in self.sc.hosts}, self.fabric_ns)
        say(f"{self.name}: {len(self.sc.hosts)} hosts, {len(self.sc.links)} links")
        if fabric_only:
            return
        for host in self.sc.hosts:
            proc = subprocess.run(self.provision_argv(host), capture_output=True, text=True,
                                  timeout=PROVISION_TIMEOUT, check=False)
            for line in proc.stdout.splitlines():
                say(line)
            if proc.returncode != 0:
                raise errors.CNIError(errors.INTERNAL, f"host {host} failed to come up",
                                      proc.stderr.strip().removeprefix(errors.LINE_PREFIX))

    def _namespaces(self) -> list[str]:
        ns_paths = [self.host_ns(h) for h in self.sc.hosts] + [self.fabric_ns]
        for host in self.sc.hosts:
            d = self.root(host).netns
            ns_paths += [os.path.join(d, f) for f in (os.listdir(d) if os.path.isdir(d) else [])]
        return ns_paths

    def down(self) -> None:
        """Remove every namespace, process, link, rule and state of the lab; fine when half-built or gone."""
        ns_paths = self._namespaces()
        ids = set()
        for path in ns_paths:
            try:
                st = os.stat(path)
            except OSError:
                continue
            if netns.exists(path):
                ids.add((st.st_dev, st.st_ino))
                # Its [::1] proxies' records (in the machine's /run) would outlive the SIGKILL below.
                proxy6.forget_namespace(port_index.namespace_key(path))
        # Containers, their supervisors and exec sessions all live in one of the lab's namespaces;
        # once none is left the kernel frees each namespace with every veth, bridge and rule in it.
        deadline = time.monotonic() + 10
        while ids and _kill_in(ids) and time.monotonic() < deadline:
            time.sleep(0.05)
        fabric.remove(ns_paths)
        shutil.rmtree(self.dir, ignore_errors=True)

    def hosts_view(self) -> dict[str, Any]:
        """Hosts with their addresses, routes and containers (what ``inspect`` shows)."""
        out: dict[str, Any] = {}
        for host in self.sc.hosts.values():
            root = self.root(host.name)
            recs = state.all_records(root) if os.path.isdir(root.containers) else []
            out[host.name] = {
                "netns": self.host_ns(host.name),
                "links": {link: " ".join(str(a[link]) for a in (host.addresses, host.addresses6) if link in a)
                          for link in host.addresses},
                "routes": [f"{r.to} via {r.via}" for r in host.routes],
                "containers": [{
                    "name": r.name, "id": r.id, "network": r.network, "state": "running" if state.alive(r) else "exited",
                    "addresses": r.addresses,
                    "ports": [ports.describe(m) for m in r.ports],
                } for r in sorted(recs, key=lambda r: r.name)],
            }
        return out

    def exec_argv(self, target: str, argv: list[str]) -> int:
        """Run ``argv`` on HOST (in its namespace) or in HOST/CONTAINER; returns its exit code."""
        host, _, container = target.partition("/")
        if host not in self.sc.hosts:
            raise ScenarioError(f"{self.sc.path}: no host {host!r}")
        self.require_built()
        if container:
            return containers.exec_in(self.root(host), container, argv, [])
        netns.setns(self.host_ns(host), netns.CLONE_NEWNET)
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            raise errors.CNIError(errors.INTERNAL, f"cannot run {argv[0]}", str(exc)) from None
        return 127  # not reached


def _kill_in(ids: set[tuple[int, int]]) -> bool:
    """SIGKILL every process whose network namespace is one of ``ids``; True if any was found."""
    found = False
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{pid}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in ids:
            found = True
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    return found
