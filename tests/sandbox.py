"""Throwaway network namespaces for tests: a sandbox "host" per test and containers inside it.

Plugins run inside the sandbox host (``ip netns exec``), so bridges, veths and sysctls never touch
the machine's own namespace.  Everything is named with this run's prefix and removed on teardown,
whether the test passed or not.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterator
from harness.agent import NO_AGENT_ENV
from harness.bench import NO_AGENT, REFERENCE_BIN
from harness.hostns import Netns, ip, netns_names, wire  # noqa: F401 - ip: the suite's name for it

from netkit.launch import invoker
from netkit.firewall import ports
from netkit.plugins import proxy6
from netkit.net import netns
from tests import machine, reach

# NETKIT_FULL=1 runs the long forms of the reliability suites (fuzzing, kill trials, soak).
FULL = os.environ.get("NETKIT_FULL", "") not in ("", "0")
# Unique per test run: every namespace this suite makes starts with it.
RUN_PREFIX = f"nkt{secrets.token_hex(2)}"
# Set to RUN_PREFIX in the session's environment (tests/conftest.py): every process the run starts
# inherits it, so one still running at the end is found by it.
RUN_MARK = "NETKIT_TEST_RUN"
_counter = itertools.count()
# The unprivileged user of the suite's "non-root is refused" checks: nobody, allowed to read (never
# write) what root can, so the checks hold wherever the checkout is (root's home is 0700 on Debian,
# and nobody could not even start the venv's interpreter from a clone there).
AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
# The reference plugins the suite runs (Debian's containernetworking-plugins, which setup.sh installs).
REFERENCE_PLUGINS = ("bridge", "host-local", "portmap", "firewall", "tuning")
TRAFFIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "traffic.py")


def missing_reference_plugins() -> list[str]:
    """The reference plugins of REFERENCE_PLUGINS that are not executables in REFERENCE_BIN."""
    return [p for p in REFERENCE_PLUGINS if not os.access(os.path.join(REFERENCE_BIN, p), os.X_OK)]


def unique(kind: str) -> str:
    """A namespace name unique to this run."""
    return f"{RUN_PREFIX}-{kind}{next(_counter)}"


class Namespace(Netns):
    """A named network namespace (harness/hostns.py) with the suite's traffic checks (tests/reach.py):
    ``ask`` and ``ping`` must be answered and try a few times; ``unanswered`` and ``unreachable`` must
    not be, try once, and need a control.
    """

    def _echo(self, addr: str) -> str | None:
        proc = self.run("ping", "-c1", f"-W{reach.TRY_TIMEOUT}", addr)
        return f"echo reply from {addr}" if proc.returncode == 0 else None

    def ping(self, addr: str, tries: int = reach.TRIES) -> reach.Answer | None:
        """The echo reply from ``addr`` (up to ``tries`` echoes, 2 s each), or None if none came back."""
        got = reach.first_answer(lambda: self._echo(addr), tries)
        return None if got is None else reach.Answer(got, self.path)

    def unreachable(self, addr: str, *, control: reach.Control) -> bool:
        """True when one echo to ``addr`` gets no reply; ``control``: see tests/reach.py."""
        return reach.unanswered(lambda: self._echo(addr), control, f"ping {addr} from {self.name}", self.path)

    def serve(self, name: str, port: int) -> subprocess.Popen[str]:
        """Start the test server (tests/traffic.py) inside the namespace; stop it with .kill()."""
        proc = subprocess.Popen([*self.enter(), sys.executable, TRAFFIC, "serve", name, str(port)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return proc

    def _ask_once(self, proto: str, addr: str, port: int, sport: int = 0) -> str | None:
        args = [sys.executable, TRAFFIC, proto, addr, str(port)] + ([str(sport)] if sport else [])
        proc = self.run(*args)
        return proc.stdout.strip() if proc.returncode == 0 else None

    def ask(self, proto: str, addr: str, port: int, sport: int = 0, tries: int = reach.TRIES) -> reach.Answer | None:
        """The answer ("NAME PEER") of a TCP connection or UDP datagram to ``addr:port``, or None.

        Up to ``tries`` tries, each with its own 2 s timeout: the first answer counts.
        """
        got = reach.first_answer(lambda: self._ask_once(proto, addr, port, sport), tries)
        return None if got is None else reach.Answer(got, self.path)

    def unanswered(self, proto: str, addr: str, port: int, *, control: reach.Control, sport: int = 0) -> bool:
        """True when one try to ``addr:port`` gets no answer; ``control`` (an answer this namespace got
        over the same path, or a check run right after) must prove the path exists: tests/reach.py."""
        return reach.unanswered(lambda: self._ask_once(proto, addr, port, sport), control,
                                f"{proto} {addr}:{port} from {self.name}", self.path)

    def ask_each(self, addr: str, ports: list[int], tries: int = reach.TRIES) -> dict[int, str | None]:
        """A TCP connection to each of ``ports`` on ``addr`` from one client process (up to ``tries``
        each): port -> the answer, or None when every try went unanswered."""
        proc = self.run(sys.executable, TRAFFIC, "tcp-each", str(tries), addr, *map(str, ports),
                        timeout=20 + 7 * tries * len(ports))
        out: dict[int, str | None] = {}
        for line in proc.stdout.splitlines():
            port, _, answer = line.partition(" ")
            out[int(port)] = None if answer == "-" else answer
        return out


@dataclass
class Sandbox:
    """A sandbox host namespace, its containers, and a bin dir of plugins."""

    host: Namespace
    bin_dir: str
    data_dir: str
    containers: list[Namespace] = field(default_factory=list)
    firewall: str = ""  # NETKIT_FIREWALL_BACKEND for the plugins, "" = detect
    agent_socket: str = ""  # the warm agent's socket; "" = plugins run in-process

    def group_chains(self) -> list[str]:
        """netkit's per-attachment firewall chains in the sandbox host, whichever backend holds them.

        Network chains (NK-N-, isolation) live as long as the bridge and are not listed.
        """
        nft = self.host.run("nft", "-j", "list", "table", "inet", "netkit")
        chains = [o["chain"]["name"] for o in json.loads(nft.stdout or '{"nftables": []}')["nftables"]
                  if "chain" in o] if nft.returncode == 0 else []
        for save in ("iptables-legacy-save", "ip6tables-legacy-save"):
            legacy = self.host.run(save, "-t", "nat").stdout
            chains += [line[1:].split()[0] for line in legacy.splitlines() if line.startswith(":NK-")]
        return sorted({c for c in chains if c.startswith(("NK-D-", "NK-M-"))})

    def machine(self, host_addrs: list[str], addr: str) -> Namespace:
        """Another machine on a link to the sandbox host.

        The host side ``uplink0`` gets ``host_addrs`` (the first is the host's main address), the
        machine gets ``addr``; both /24.
        """
        ns = Namespace(unique("x"))
        ip("netns", "add", ns.name)
        self.containers.append(ns)
        ns.run("ip", "link", "set", "lo", "up", check=True)
        wire(self.host, ns, host_addrs, addr)
        return ns

    def container(self) -> Namespace:
        """A new empty container namespace (removed with the sandbox)."""
        ns = Namespace(unique("c"))
        ip("netns", "add", ns.name)
        self.containers.append(ns)
        ns.run("ip", "link", "set", "lo", "up")
        return ns

    @property
    def cni_path(self) -> str:
        return f"{self.bin_dir}:{REFERENCE_BIN}"

    def env(self, command: str, container: Namespace | None = None, ifname: str = "eth0",
            container_id: str | None = None, args: str = "", netns: str | None = None) -> dict[str, str]:
        """The CNI_* environment for one call."""
        env = {"CNI_COMMAND": command, "CNI_PATH": self.cni_path, "PATH": os.environ.get("PATH", "")}
        if self.firewall:
            env["NETKIT_FIREWALL_BACKEND"] = self.firewall
        # Never a machine-wide agent: this sandbox's, or none at all (in-process, and no agent started).
        env["NETKIT_AGENT_SOCKET"] = self.agent_socket or NO_AGENT
        if not self.agent_socket:
            env.update(NO_AGENT_ENV)
        if container is not None or netns is not None:
            env["CNI_NETNS"] = netns if netns is not None else container.path  # type: ignore[union-attr]
        if command in ("ADD", "DEL", "CHECK"):
            env["CNI_IFNAME"] = ifname
            env["CNI_CONTAINERID"] = container_id or (container.name if container else "none")
        if args:
            env["CNI_ARGS"] = args
        return env

    def exec_plugin(self, plugin: str, env: dict[str, str], conf: dict[str, Any] | bytes) -> tuple[int, Any]:
        """Exec a plugin executable inside the sandbox host; returns (exit status, parsed stdout or None)."""
        exe = plugin if plugin.startswith("/") else os.path.join(
            self.bin_dir if plugin.startswith("netkit-") else REFERENCE_BIN, plugin)
        stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
        proc = subprocess.run(["ip", "netns", "exec", self.host.name, exe], input=stdin, env=env,
                              capture_output=True, timeout=60)
        assert b"Traceback" not in proc.stderr, proc.stderr.decode()
        out = json.loads(proc.stdout) if proc.stdout.strip() else None
        return proc.returncode, out

    def call(self, plugin: str, command: str, conf: dict[str, Any] | bytes,
             container: Namespace | None = None, **kw: Any) -> tuple[int, Any]:
        """Exec ``plugin`` with ``command`` for ``container``."""
        return self.exec_plugin(plugin, self.env(command, container, **kw), conf)

    def handle(self, plugin: str, command: str, conf: dict[str, Any] | bytes,
               container: Namespace | None = None, **kw: Any) -> tuple[int, Any]:
        """Run the protocol handler in-process inside the sandbox host (no exec, same code)."""
        stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
        with netns.entered(self.host.path):
            out, code = invoker.handle(plugin, self.env(command, container, **kw), stdin)
        return code, (json.loads(out) if out.strip() else None)

    def leases(self, network: str) -> list[str]:
        """Lease files (addresses) of ``network`` in the sandbox's data dir."""
        d = os.path.join(self.data_dir, network)
        if not os.path.isdir(d):
            return []
        return sorted(n for n in os.listdir(d) if n[0].isdigit() or ":" in n)


@contextlib.contextmanager
def sandbox(bin_dir: str, data_dir: str, agent_socket: str = "") -> Iterator[Sandbox]:
    """A fresh sandbox host; every namespace of it is deleted afterwards, even on failure."""
    host = Namespace(unique("h"))
    ip("netns", "add", host.name)
    box = Sandbox(host, bin_dir, data_dir, agent_socket=agent_socket)
    try:
        host.run("ip", "link", "set", "lo", "up")
        yield box
    finally:
        with contextlib.suppress(OSError):
            key = ports.namespace_key(host.path)
            proxy6.forget_namespace(key)  # its [::1] proxies, which would keep it alive
            ports.forget_namespace(key)  # the port index of its published ports
        for ns in [*box.containers, host]:
            ip("netns", "del", ns.name, check=False)


def serve_in(named: dict[str, Namespace], port: int) -> subprocess.Popen[str]:
    """One server process answering TCP on ``port`` in each namespace ("NAME PEER", NAME its key);
    stop it with .kill()."""
    proc = subprocess.Popen([sys.executable, TRAFFIC, "serve-in", str(port),
                             *(f"{name}={ns.path}" for name, ns in named.items())],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def bridge_conf(box: Sandbox, name: str = "testnet", version: str = "1.0.0", subnet: str = "10.20.0.0/24",
                ipam_type: str = "netkit-ipam", plugin_type: str = "netkit-bridge", **extra: Any) -> dict[str, Any]:
    """A bridge network config with its IPAM in the sandbox's data dir."""
    conf: dict[str, Any] = {
        "cniVersion": version,
        "name": name,
        "type": plugin_type,
        "bridge": "nkbr0",
        "isGateway": True,
        "ipam": {"type": ipam_type, "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}],
                 "dataDir": box.data_dir},
    }
    conf.update(extra)
    return conf


def own_processes() -> dict[int, str]:
    """Processes started by this run (their environment carries RUN_MARK), by PID: command line.

    A process whose exit is under way gets a moment to finish: only what stays is reported.
    """
    mark = f"{RUN_MARK}={RUN_PREFIX}".encode()
    found: dict[int, str] = {}
    for _ in range(50):  # up to ~5 s for children a test killed to be reaped; not a time bound on anything
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if mark not in f.read().split(b"\0"):
                        continue
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:  # gone meanwhile, or a kernel thread
                continue
            if cmd:  # a zombie has none: it is its parent's to reap, not running
                found[int(entry)] = cmd
        if not found:
            break
        time.sleep(0.1)
    return found


def leftovers(before: machine.Snapshot | None, netns: str | None = None,
              mounts_under: tuple[str, ...] = ()) -> list[str]:
    """What this run left: its namespaces, its processes, and what changed since ``before``.

    ``before`` is the snapshot taken when the session started (None: the comparison is skipped) of
    network namespace ``netns`` (None = the machine's own), netkit's directories and the mounts under
    ``mounts_under``: what was there already (the demo's table, bridge, ip_forward) is not reported,
    what the run added or changed, also inside something that was there, is.
    """
    out = [f"netns {n}" for n in sorted(netns_names())
           if n.startswith((RUN_PREFIX, f"nkl-{RUN_PREFIX}"))]  # nkl-: lab hosts of labs named by this run
    out += [f"process {pid} ({cmd[:100]})" for pid, cmd in sorted(own_processes().items())]
    if before is not None:
        after = machine.snapshot(netns, mounts_under=mounts_under)
        out += machine.changes(before, after)
    return out
