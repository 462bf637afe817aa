"""podman 4.3 as the CNI client of netkit's plugins, on the suite's podman sandbox (harness/podman.py).

A session-wide ``Store`` (storage, image, netkit's plugins) and, per variant, a ``Network``: a sandbox
host of tests/sandbox.py, a podman configuration whose network runs that variant's plugins, and the
helpers the tests ask podman and the sandbox with.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from harness import podman as hp
from harness import agent as harness_agent
from harness import procs
from harness.podman import GATEWAY, SUBNET
from netkit.agent import protocol
from netkit.launch import install
from netkit.net import netns
from tests import reach
from tests import sandbox as sb

NETWORK = "nkpod"
ACTIVE: list["Store"] = []                   # stores not yet torn down


class Podman(hp.Podman):
    """``podman`` with one containers.conf, run inside one sandbox namespace."""

    def __init__(self, store: "Store", conf: str, ns: sb.Namespace, **env: str) -> None:
        super().__init__(store, conf, ns.path, **env)
        self.ns = ns

    def run_d(self, name: str, *args: str) -> str:
        """``podman run -d --name NAME ARGS...``; the container ID."""
        return self("run", "-d", "--name", name, *args).stdout.strip()

    def web(self, name: str, *opts: str, port: int = 80) -> str:
        """A detached busybox httpd on ``port`` whose page is the container's name."""
        return self.run_d(name, *opts, self.store.image, "sh", "-c",
                          f"echo {name} > /www/index.html && exec httpd -f -p {port} -h /www")

    def sleeper(self, name: str, *opts: str) -> str:
        return self.run_d(name, *opts, self.store.image, "sleep", "3600")

    def exec(self, ctr: str, *cmd: str) -> subprocess.CompletedProcess[str]:
        return self("exec", ctr, *cmd, check=False)

    def wget(self, ctr: str, url: str, tries: int = 3) -> str | None:
        """The page at ``url`` fetched inside ``ctr`` (busybox wget; its -T segfaults in 1.35: timeout)."""
        for _ in range(tries):
            proc = self.exec(ctr, "timeout", "5", "wget", "-q", "-O-", url)
            if proc.returncode == 0:
                return proc.stdout.strip()
            time.sleep(0.3)
        return None

    def links(self, ctr: str) -> list[str]:
        """Interface names in the container's network namespace (/proc/net/dev is per namespace)."""
        out = self("exec", ctr, "cat", "/proc/net/dev").stdout
        return sorted(line.split(":")[0].strip() for line in out.splitlines()[2:] if ":" in line)

    def addresses(self, ctr: str, ifname: str = "eth0") -> list[str]:
        """IPv4 ``addr/prefix`` on ``ifname`` inside the container (busybox ip)."""
        out = self("exec", ctr, "ip", "-o", "-4", "addr", "show", "dev", ifname).stdout
        return re.findall(r"inet (\S+)", out)

    def inspect(self, ctr: str) -> dict[str, Any]:
        return json.loads(self("inspect", ctr).stdout)[0]

    def address(self, ctr: str, network: str = NETWORK) -> str:
        return self.inspect(ctr)["NetworkSettings"]["Networks"][network]["IPAddress"]

    def rm(self, *ctrs: str) -> None:
        self("rm", "-f", "-t", "0", *ctrs)

    def rm_all(self) -> list[str]:
        """Remove every container; the IDs that were there.  If our sandbox is gone already, from a
        fresh one (their CNI DEL then finds nothing, which is fine)."""
        if self.store.done:
            return []
        if not os.path.exists(self.ns.path):
            ns = sb.Namespace(sb.unique("p"))
            sb.ip("netns", "add", ns.name)
            self.store.add_namespace(ns)
            return Podman(self.store, self.conf, ns, **self.extra_env).rm_all()
        return self.remove_all()


class Store(hp.Store):
    """The session's podman (harness/podman.py), its sandbox namespaces and netkit's plugins."""

    def __init__(self) -> None:
        super().__init__(tempfile.mkdtemp(prefix=f"{sb.RUN_PREFIX}-podman-"), f"localhost/{sb.RUN_PREFIX}-busybox:latest")
        self.bin_dir = os.path.join(self.dir, "bin")
        self.sandbox = sb.Namespace(sb.unique("p"))      # for the import and the final clean-up
        self.namespaces: list[sb.Namespace] = []          # every sandbox host podman ran in
        self.active: list[Podman] = []                   # podman of every network in use

    def add_namespace(self, ns: sb.Namespace) -> None:
        self.namespaces.append(ns)
        self.inodes.add(os.stat(ns.path).st_ino)

    def setup(self) -> None:
        super().setup()
        install.install_plugins(self.bin_dir)
        sb.ip("netns", "add", self.sandbox.name)
        self.add_namespace(self.sandbox)
        self.sandbox.run("ip", "link", "set", "lo", "up", check=True)
        self.podman("base", [sb.REFERENCE_BIN], self.sandbox).import_image({"www/index.html": b"netkit e2e\n"})

    def podman(self, name: str, plugin_dirs: list[str], ns: sb.Namespace, agent_socket: str = "") -> Podman:
        """podman with configuration ``name``; ``agent_socket``: where netkit's plugins find (or start) the
        agent, in podman's environment and in conmon's (`podman container cleanup` runs the DEL with that)."""
        if not agent_socket:
            return Podman(self, self.write_conf(name, plugin_dirs), ns)
        conmon = f'conmon_env_vars = ["PATH={hp.CLEAN_PATH}", "{protocol.ENV_SOCKET}={agent_socket}"]\n'
        return Podman(self, self.write_conf(name, plugin_dirs, conmon), ns, **{protocol.ENV_SOCKET: agent_socket})

    def teardown(self, wait_s: float = 60) -> None:
        """Everything of the session, once (a Ctrl-C calls it early: see conftest.py)."""
        if self.done:
            return
        for pm in self.active:                  # each network's containers with its own config
            pm.rm_all()
        base = Podman(self, os.path.join(self.dir, "base", "containers.conf"), self.sandbox)
        if os.path.exists(base.conf) and os.path.exists(os.path.join(self.dir, "graph")):
            left = base.rm_all()
            if left:
                self.problems.append(f"podman containers left at session end: {left}")
        super().teardown(wait_s)
        for ns in self.namespaces:
            sb.ip("netns", "del", ns.name, check=False)
        self.inodes.clear()                       # inode numbers are reused once a namespace is gone


@contextlib.contextmanager
def store() -> Iterator[Store]:
    """The session's podman storage and image; everything removed afterwards, even on failure."""
    st = Store()
    ACTIVE.append(st)
    try:
        st.setup()
        yield st
    finally:
        st.teardown()
        ACTIVE.remove(st)
    if st.problems:
        raise AssertionError("podman clean-up: " + "; ".join(st.problems))


# ---- a network: one variant of plugins behind podman ---------------------------------------------------
@dataclass
class Network:
    """One variant: a podman configuration whose network ``NETWORK`` runs these plugins, in its own sandbox."""

    variant: str
    podman: Podman
    box: sb.Sandbox
    written: dict[str, Any]                 # what `podman network create` wrote
    conflist: dict[str, Any]                # what podman reads (and the plugins get)
    conflist_path: str
    name: str = NETWORK
    gateway: str = GATEWAY
    subnet: str = SUBNET
    agent_socket: str = ""                  # netkit's: where its first plugin exec starts the agent

    @property
    def host(self) -> sb.Namespace:
        return self.box.host

    @property
    def bridge(self) -> str:
        return self.conflist["plugins"][0]["bridge"]

    def leases(self) -> list[str]:
        return self.box.leases(self.name)

    def veths(self) -> list[str]:
        """veth links in the sandbox host."""
        return sorted(self.veth_indexes())

    def veth_indexes(self) -> dict[str, int]:
        """veth links in the sandbox host: name -> ifindex (a new link gets a new index)."""
        out = self.host.run("ip", "-d", "-j", "link", "show").stdout
        return {link["ifname"]: link["ifindex"] for link in json.loads(out or "[]")
                if link.get("linkinfo", {}).get("info_kind") == "veth"}

    def rule_chains(self) -> list[str]:
        """Per-attachment NAT chains in the sandbox host: netkit's NK-D-/NK-M- groups, or the reference's
        CNI-DN-<hash> (portmap) and CNI-<hash> (bridge ipMasq) chains."""
        if self.variant == "netkit":
            return self.box.group_chains()
        out = self.host.run("iptables-save", "-t", "nat").stdout
        return sorted(line[1:].split()[0] for line in out.splitlines()
                      if re.match(r":CNI-(DN-[0-9a-f]+|[0-9a-f]{24}) ", line))

    def http(self, url: str, deadline: float = 0) -> str | None:
        """The page at ``url`` fetched from the sandbox host: a few tries (tests/reach.py), and again
        until ``deadline`` seconds if given (a server just starting); the body or None."""
        return poll(lambda: reach.first_answer(lambda: http_get(self.host, url)), deadline)

    def no_http(self, url: str, control: reach.Control) -> bool:
        """True when one GET of ``url`` from the sandbox host gets no answer; ``control`` (the same page
        fetched before the change, or another over the same path) proves the path: tests/reach.py."""
        return reach.unanswered(lambda: http_get(self.host, url), control, f"GET {url} from the sandbox host")


def http_get(ns: sb.Namespace, url: str, timeout: float = 3) -> str | None:
    """One HTTP GET from inside ``ns`` (this thread enters it; no proxy); the body or None."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with netns.entered(ns.path):
        try:
            with opener.open(url, timeout=timeout) as resp:
                return resp.read().decode(errors="replace").strip()
        except OSError:
            return None


def poll(fn: Callable[[], Any], deadline: float) -> Any:
    """``fn()`` until it returns something truthy or ``deadline`` seconds pass; its last result."""
    end = time.monotonic() + deadline
    while True:
        got = fn()
        if got or time.monotonic() >= end:
            return got
        time.sleep(0.1)


_networks = itertools.count()


def _not_agents(found: dict[int, str]) -> dict[int, str]:
    """``found`` without netkit agents and the runtime servers beside them (a network's agent is
    stopped, not reaped: see network; its runtime server goes with it)."""
    agents = harness_agent.agent_processes()
    return {pid: cmd for pid, cmd in found.items() if pid not in agents and "netkit.cli.runtime_server" not in cmd}


@contextlib.contextmanager
def network(st: Store, variant: str) -> Iterator[Network]:
    """A sandbox host, a podman configuration for ``variant`` and its network, made by ``podman network create``.

    The netkit variant's podman finds only netkit's plugins (``cni_plugin_dirs``), the reference's only
    Debian's; leases go to a directory of the variant's own.  netkit's plugins are the default install:
    no agent is set up, the first plugin exec starts one (on a socket in the network's directory, so it
    is this network's alone), stopped here at the end.
    """
    label = f"{variant}{next(_networks)}"          # one per test module that uses it
    plugin_dirs = [st.bin_dir] if variant == "netkit" else [sb.REFERENCE_BIN]
    agent_socket = os.path.join(st.dir, label, "agent", "agent.sock") if variant == "netkit" else ""
    if agent_socket:
        os.makedirs(os.path.dirname(agent_socket))
        harness_agent.OWNED.add(agent_socket)  # the tests' leftover check: stopped below, not by each test
    with sb.sandbox(st.bin_dir, os.path.join(st.dir, label, "leases")) as box:
        st.add_namespace(box.host)
        inode = os.stat(box.host.path).st_ino
        pm = st.podman(label, plugin_dirs, box.host, agent_socket)
        st.active.append(pm)
        try:
            written, conflist, path = pm.create_network(NETWORK, variant, box.data_dir)
            yield Network(variant, pm, box, written, conflist, path, agent_socket=agent_socket)
        finally:
            pm.rm_all()
            st.active.remove(pm)
            if not st.done:  # podman's processes first (a late `container cleanup` still runs a DEL)
                st.problems += procs.reap(lambda: _not_agents(st.processes()), 60)
            if agent_socket:
                harness_agent.stop_started(agent_socket)
                harness_agent.OWNED.discard(agent_socket)
    st.inodes.discard(inode)                  # the namespace is gone; its inode number may be reused
