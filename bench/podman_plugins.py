#!/usr/bin/env python3
"""podman 4.3 as the CNI client: netkit's plugins against the reference plugins, in one run.

Run as root from the repository root::

    .venv/bin/python bench/podman_plugins.py [--runs 20] [--warmup 2] [--agent [--no-conmon-env]] [--json out.json]

Measures the wall time of ``podman run --rm --network NET IMAGE true`` and of
``podman run --rm --network NET -p HOSTPORT:80 IMAGE true``, where NET is the network
``podman network create`` writes, once with its plugin types replaced by netkit's (netkit-bridge,
netkit-ipam, netkit-portmap; no firewall/tuning: tests/e2e/podman.py's netkit variant) and once as
written (the reference bridge, host-local, portmap, firewall, tuning), interleaved, plus
``podman run --rm --network none IMAGE true`` as the floor.  ``--agent`` runs a warm ``netkit agent``
and points netkit's plugins at it.

Everything happens in throwaway sandbox "host" network namespaces (one per variant, one for the
floor; their firewall rules never share a namespace); podman runs as ``nsenter --net=SANDBOX podman``
with its own containers.conf and storage under one temp dir.  Everything is deleted in a ``finally``
(Ctrl-C and SIGTERM included) and the script checks that nothing is left.  See bench/README.md.  Not
part of the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import glob
import io
import json
import os
import platform
import re
import resource
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Any

from benchlib import run, ip, netns_names, root_links, summary, processes_of_run  # noqa: E402 - bench/ is on sys.path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from netkit import __version__ as NETKIT_VERSION  # noqa: E402
from netkit.launch import install  # noqa: E402
from netkit.agent import protocol as agent_protocol  # noqa: E402
from tests.e2e.podman import adapt  # noqa: E402 - the conflist shape of the e2e suite, not a copy of it

NETKIT, REFERENCE, FLOOR = "netkit", "reference", "none"
VARIANTS = (NETKIT, REFERENCE)
NSENTER = "/usr/bin/nsenter"
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUSYBOX = "/bin/busybox"
REFERENCE_BIN = "/usr/lib/cni"
REFERENCE_PLUGINS = ("bridge", "host-local", "portmap", "firewall", "tuning")
SUBNET, GATEWAY, PREFIX = "10.89.0.0/24", "10.89.0.1", "10.89.0."
PORT_BASE = 20000                          # + a counter over every -p run (warm-up and checks included)
CONTAINER_PORT = 80
EXEC_TIMEOUT_S = 120
NPROC_CAP = 32768                          # podman 4.3 lowers its own RLIMIT_NPROC to this
PODMAN_ROOT_PATHS = (                      # what rootful podman writes outside our temp dir, whatever its config
    "/var/lib/containers", "/var/lib/containers/cache", "/var/lib/containers/cache/blob-info-cache-v1.boltdb",
    "/var/lib/cni", "/var/lib/cni/networks", "/var/lib/cni/results",
    "/run/runc", "/run/containers", "/run/libpod", "/dev/shm/libpod_lock",
)
SHARED_PARENTS = {"/var/lib/cni", "/var/lib/cni/networks", "/var/lib/cni/results", "/run/runc"}  # rmdir if empty only
PROBED = ("netkit-bridge", "netkit-ipam", "netkit-portmap")
ROWS = {"plain": "`run --rm --network NET IMAGE true`",
        "port": "`run --rm --network NET -p HOSTPORT:80 IMAGE true`"}
CLK_TCK = os.sysconf("SC_CLK_TCK")
_libc = ctypes.CDLL(None, use_errno=True)
_MNT_DETACH = 2


class BenchError(RuntimeError):
    """Something failed: the numbers would be meaningless."""


def tail(text: str, n: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else "..." + text[-n:]


def ns_links(ns: str) -> list[str]:
    out = ip("netns", "exec", ns, "ip", "-j", "link", "show").stdout
    return sorted(link["ifname"] for link in json.loads(out or "[]"))


def nat_text(ns: str) -> str:
    """Every NAT/filter rule of a sandbox as text: nft's ruleset and the iptables views."""
    parts = [run(["ip", "netns", "exec", ns, "nft", "list", "ruleset"]).stdout]
    for tool in ("iptables-save", "iptables-legacy-save"):
        if shutil.which(tool):
            parts.append(run(["ip", "netns", "exec", ns, tool, "-t", "nat"]).stdout)
    return "\n".join(parts)


def has_dnat(text: str, port: int) -> bool:
    return re.search(rf"dport\s+{port}\b", text) is not None


def attachment_chains(text: str) -> list[str]:
    """Per-attachment chains: netkit's NK-D-*/NK-M-*, the reference's CNI-DN-<hash>/CNI-<hash>."""
    return sorted(set(re.findall(r"\b(NK-[DM]-[\w-]+|CNI-(?:DN-)?[0-9a-f]{16,})\b", text)))


class Agent:
    """``netkit agent --socket <tmp>/agent.sock`` inside the netkit sandbox; its counters from /proc."""

    def __init__(self, sandbox: str, sock: str, log: str) -> None:
        self.sock, self.log = sock, log
        self.argv = [NSENTER, f"--net=/run/netns/{sandbox}", sys.executable, "-m", "netkit", "agent", "--socket", sock]
        self.proc: subprocess.Popen[bytes] | None = None
        self.rusage: Any = None

    def start(self) -> None:
        with open(self.log, "wb") as log:
            # nsenter execs python in place: the pid we hold is the agent's.
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=REPO,
                                         env={"PATH": CLEAN_PATH, "HOME": os.environ.get("HOME", "/root")},
                                         start_new_session=True)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                with open(self.log, errors="replace") as f:
                    raise BenchError(f"netkit agent did not start: {tail(f.read())}")
            time.sleep(0.05)

    def counters(self) -> tuple[int, int]:
        """(read syscalls, CPU clock ticks) of the whole agent, exited request threads included."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise BenchError(f"netkit agent exited (status {self.proc.returncode})")
        with open(f"/proc/{self.proc.pid}/io") as f:
            syscr = int(next(line for line in f if line.startswith("syscr:")).split()[1])
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return syscr, int(fields[11]) + int(fields[12])     # utime + stime (fields 14, 15)

    def stop(self) -> str:
        """SIGTERM (the agent removes its socket), SIGKILL after 5 s; a problem or ""."""
        if self.proc is None or self.proc.returncode is not None:
            return ""
        problem = ""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while True:
            try:
                pid, status, rusage = os.wait4(self.proc.pid, os.WNOHANG)
            except ChildProcessError:
                return problem
            if pid:
                self.rusage, self.proc.returncode = rusage, os.waitstatus_to_exitcode(status)
                return problem
            if time.monotonic() > deadline and not problem:
                problem = f"netkit agent {self.proc.pid} ignored SIGTERM for 5 s: killed"
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
            time.sleep(0.05)


class Bench:
    def __init__(self, runs: int, warmup: int, agent: bool, conmon_env: bool) -> None:
        self.runs, self.warmup, self.use_agent, self.conmon_env = runs, warmup, agent, conmon_env
        while True:
            self.tag = f"nkq{secrets.token_hex(3)}"
            if not any(n.startswith(self.tag) for n in netns_names()):
                break
        # One name per variant: all configurations share one storage, so `podman ps -a` lists every
        # container, and teardown must remove each with the configuration (and sandbox) of its network.
        self.network = {NETKIT: f"{self.tag}-nk", REFERENCE: f"{self.tag}-ref"}
        self.sandbox = {NETKIT: f"{self.tag}-n", REFERENCE: f"{self.tag}-r", FLOOR: f"{self.tag}-0"}
        self.netns_before = netns_names()
        self.paths_before = {p: os.path.lexists(p) for p in PODMAN_ROOT_PATHS}
        self.cgroups_before = set(glob.glob("/sys/fs/cgroup/*/libpod_parent"))
        self.made_netns: list[str] = []
        self.sandbox_inodes: set[int] = set()
        self.tmp = ""
        self.confs: dict[str, str] = {}             # config name -> containers.conf
        self.conf_sandbox: dict[str, str] = {}      # config name -> sandbox it runs in
        self.data_dir: dict[str, str] = {}
        self.conflists: dict[str, dict[str, Any]] = {}
        self.agent_socket = ""
        self.agent: Agent | None = None
        self.image = f"localhost/{self.tag}-busybox:latest"
        self.port_seq = 0
        self.ports: list[int] = []
        self.samples: dict[str, dict[str, list[float]]] = {}
        self.warmup_samples: dict[str, dict[str, list[float]]] = {}
        self.lease_left: dict[str, int] = {NETKIT: 0, REFERENCE: 0}   # runs whose lease was still there at exit
        self.agent_use: dict[str, dict[str, int]] = {}                # impl -> runs, runs with agent reads, ticks
        self.probe: list[dict[str, str]] = []
        self.probe_agent: tuple[int, int] = (0, 0)
        self.checks: list[str] = []
        self.commands: dict[str, str] = {}
        self.versions: dict[str, str] = {}
        self.container_keys: set[str] = set()
        self.removed: list[str] = []
        self.cleanup_problems: list[str] = []
        self.cleanup_notes: list[str] = []

    # ---- commands --------------------------------------------------------------------------------------
    def env(self, conf: str) -> dict[str, str]:
        env = {"PATH": CLEAN_PATH, "HOME": os.environ.get("HOME", "/root"), "CONTAINERS_CONF": self.confs[conf],
               "CONTAINERS_STORAGE_CONF": os.path.join(self.tmp, "storage.conf")}
        if conf in (NETKIT, "probe"):
            env["NETKIT_AGENT_SOCKET"] = self.agent_socket
        return env

    def argv(self, conf: str, *args: str) -> list[str]:
        return [NSENTER, f"--net=/run/netns/{self.conf_sandbox[conf]}", "podman", *args]

    def show(self, conf: str, argv: list[str]) -> str:
        env = self.env(conf)
        pre = " ".join(f"{k}={shlex.quote(env[k])}" for k in env if k not in ("PATH", "HOME"))
        return f"{pre} {shlex.join(argv)}"

    def podman(self, conf: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = self.argv(conf, *args)
        proc = run(argv, env=self.env(conf), cwd=self.tmp, stdin=subprocess.DEVNULL, start_new_session=True)
        if check and proc.returncode != 0:
            raise BenchError(f"{self.show(conf, argv)} failed (exit {proc.returncode}): {tail(proc.stderr or proc.stdout)}")
        return proc

    def timed(self, conf: str, argv: list[str]) -> float:
        """Wall time in ms from spawning argv to its exit; the command must exit 0.

        The child gets a session of its own, so a Ctrl-C reaches this script only; the child is then left
        to finish (killed only after EXEC_TIMEOUT_S) and the interrupt goes on to the cleanup.
        """
        env = self.env(conf)
        t0 = time.perf_counter_ns()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, cwd=self.tmp, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=EXEC_TIMEOUT_S)
        except BaseException:
            try:
                proc.communicate(timeout=EXEC_TIMEOUT_S)
            except BaseException:
                proc.kill()
                proc.wait()
            raise
        ms = (time.perf_counter_ns() - t0) / 1e6
        if proc.returncode != 0:
            raise BenchError(f"{self.show(conf, argv)} failed (exit {proc.returncode}): "
                             f"{tail((err or out).decode(errors='replace'))}")
        return ms

    def next_port(self) -> int:
        self.port_seq += 1
        port = PORT_BASE + self.port_seq
        self.ports.append(port)
        return port

    def leases(self, variant: str) -> list[str]:
        d = os.path.join(self.data_dir[variant], self.network[variant])
        return sorted(n for n in os.listdir(d) if n[0].isdigit()) if os.path.isdir(d) else []

    # ---- setup -----------------------------------------------------------------------------------------
    def netns_add(self, name: str) -> None:
        proc = ip("netns", "add", name)
        if proc.returncode != 0:
            raise BenchError(f"ip netns add {name} failed: {proc.stderr.strip()}")
        self.made_netns.append(name)
        self.sandbox_inodes.add(os.stat(f"/run/netns/{name}").st_ino)
        proc = ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        if proc.returncode != 0:
            raise BenchError(f"bringing lo up in {name} failed: {proc.stderr.strip()}")

    def write_conf(self, name: str, plugin_dirs: list[str], net_dir: str, sandbox: str, agent_env: bool) -> None:
        """A containers.conf of ours; every config shares storage, tmp dir and locks, not its network dir."""
        os.makedirs(os.path.join(self.tmp, name), exist_ok=True)
        os.makedirs(net_dir, exist_ok=True)
        # A container's limits may not exceed the hard limits of runc: ours for nofile; nproc no higher
        # than what podman lowers its own to (see bench/runtime_start.py).
        nofile, nproc = (resource.getrlimit(r)[1] for r in (resource.RLIMIT_NOFILE, resource.RLIMIT_NPROC))
        nproc = NPROC_CAP if nproc == resource.RLIM_INFINITY else min(nproc, NPROC_CAP)
        nofile_s = "-1" if nofile == resource.RLIM_INFINITY else str(nofile)
        # conmon starts `podman container cleanup` (which runs the CNI DEL) with conmon_env_vars, not with
        # podman's environment: the socket goes there too, unless --no-conmon-env.
        conmon = ""
        if agent_env and self.conmon_env:
            conmon = (f'conmon_env_vars = ["PATH={CLEAN_PATH}", '
                      f'"{agent_protocol.ENV_SOCKET}={self.agent_socket}"]\n')
        dirs = ", ".join(json.dumps(d) for d in plugin_dirs)
        path = os.path.join(self.tmp, name, "containers.conf")
        with open(path, "w") as f:
            f.write(f"""# Written by bench/podman_plugins.py for one run; removed with it.
[containers]
default_ulimits = ["nofile={nofile_s}:{nofile_s}", "nproc={nproc}:{nproc}"]

[network]
network_backend = "cni"
cni_plugin_dirs = [{dirs}]
network_config_dir = "{net_dir}"

[engine]
{conmon}runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{self.tmp}/tmp"
image_copy_tmp_dir = "{self.tmp}/tmp"
lock_type = "file"
""")
        self.confs[name], self.conf_sandbox[name] = path, sandbox

    def rootfs_tar(self) -> str:
        """Static busybox with sh, true, sleep and ip links."""
        path = os.path.join(self.tmp, "rootfs.tar")
        with tarfile.open(path, "w") as tar:
            for name in ("bin", "etc", "proc", "sys", "dev", "tmp"):
                ti = tarfile.TarInfo(name)
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(ti)
            tar.add(BUSYBOX, arcname="bin/busybox")
            for applet in ("sh", "true", "sleep", "ip"):
                ti = tarfile.TarInfo(f"bin/{applet}")
                ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, "busybox", 0o777
                tar.addfile(ti)
            for name, body in (("etc/passwd", b"root:x:0:0:root:/:/bin/sh\n"), ("etc/group", b"root:x:0:\n")):
                ti = tarfile.TarInfo(name)
                ti.size, ti.mode = len(body), 0o644
                tar.addfile(ti, io.BytesIO(body))
        return path

    def setup(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix=f"{self.tag}-")
        for sub in ("graph", "run", "tmp"):
            os.makedirs(os.path.join(self.tmp, sub))
        with open(os.path.join(self.tmp, "storage.conf"), "w") as f:
            f.write(f'[storage]\ndriver = "overlay"\ngraphroot = "{self.tmp}/graph"\nrunroot = "{self.tmp}/run"\n')
        bin_dir = os.path.join(self.tmp, "bin")
        install.install_plugins(bin_dir)
        # Without --agent the plugins get a socket path where nothing listens: never a machine-wide agent.
        self.agent_socket = os.path.join(self.tmp, "agent.sock" if self.use_agent else "no-agent.sock")
        for name in self.sandbox.values():
            self.netns_add(name)
        self.write_conf(FLOOR, [REFERENCE_BIN], os.path.join(self.tmp, FLOOR, "net.d"), self.sandbox[FLOOR], False)
        for variant in VARIANTS:
            self.data_dir[variant] = os.path.join(self.tmp, variant, "leases")
            self.write_conf(variant, [bin_dir] if variant == NETKIT else [REFERENCE_BIN],
                            os.path.join(self.tmp, variant, "net.d"), self.sandbox[variant], variant == NETKIT)
        # The env check: the same network and sandbox as netkit's, plugins behind logging wrappers.
        self.write_conf("probe", [os.path.join(self.tmp, "probe", "bin")], os.path.join(self.tmp, NETKIT, "net.d"),
                        self.sandbox[NETKIT], True)

        tar = self.rootfs_tar()
        self.podman(FLOOR, "import", tar, self.image)
        self.commands["import"] = self.show(FLOOR, self.argv(FLOOR, "import", tar, self.image))
        self.versions["podman"] = self.podman(FLOOR, "version", "--format", "{{.Client.Version}}").stdout.strip()
        self.versions["runc"] = (run(["runc", "--version"]).stdout.splitlines() or ["?"])[0]

        for variant in VARIANTS:
            args = ("network", "create", "--disable-dns", "--subnet", SUBNET, "--gateway", GATEWAY,
                    self.network[variant])
            self.podman(variant, *args)
            path = os.path.join(self.tmp, variant, "net.d", f"{self.network[variant]}.conflist")
            with open(path) as f:
                written = json.load(f)
            types = [p["type"] for p in written["plugins"]]
            if types != ["bridge", "portmap", "firewall", "tuning"]:
                raise BenchError(f"podman network create wrote plugins {types}, expected bridge, portmap, firewall, "
                                 f"tuning (the shape tests/e2e/podman.py adapts)")
            conflist = adapt(written, variant, self.data_dir[variant])
            with open(path, "w") as f:
                json.dump(conflist, f, indent=2)
            self.conflists[variant] = conflist
            self.commands[f"{variant} network create"] = self.show(variant, self.argv(variant, *args))

        if self.use_agent:
            self.agent = Agent(self.sandbox[NETKIT], self.agent_socket, os.path.join(self.tmp, "agent.log"))
            self.agent.start()
            self.commands["agent"] = shlex.join(self.agent.argv)
        for variant in VARIANTS:
            self.check_variant(variant)
        self.env_probe(bin_dir)

    def check_variant(self, variant: str) -> None:
        """Untimed: a container on NET with a published port gets an address in the subnet and a DNAT
        rule; after rm, no lease, rule or veth is left."""
        port = self.next_port()
        name = f"{self.tag}-check-{variant}"
        self.podman(variant, "run", "-d", "--name", name, "--network", self.network[variant], "-p",
                    f"{port}:{CONTAINER_PORT}", self.image, "sleep", "60")
        try:
            addr = self.podman(variant, "exec", name, "ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout
            if f"inet {PREFIX}" not in addr:
                raise BenchError(f"{variant}: container eth0 has no address in {SUBNET}: {tail(addr)}")
            if not has_dnat(nat_text(self.sandbox[variant]), port):
                raise BenchError(f"{variant}: no DNAT rule for host port {port} in {self.sandbox[variant]}")
            if len(self.leases(variant)) != 1:
                raise BenchError(f"{variant}: leases {self.leases(variant)}, expected one")
        finally:
            self.podman(variant, "rm", "-f", "-t", "0", name, check=False)
        deadline = time.monotonic() + 10         # the DEL may run in conmon's cleanup, just after rm returns
        while time.monotonic() < deadline and (self.leases(variant) or has_dnat(nat_text(self.sandbox[variant]), port)):
            time.sleep(0.1)
        if self.leases(variant) or has_dnat(nat_text(self.sandbox[variant]), port):
            raise BenchError(f"{variant}: lease or DNAT for {port} left after rm -f")
        self.checks.append(f"{variant}: address {addr.split('inet ')[1].split()[0]}, DNAT for host port {port} while "
                           f"running; lease and DNAT gone after rm")

    def env_probe(self, bin_dir: str) -> None:
        """Untimed: one measured-shape run on netkit's network with logging wrappers around netkit's plugins.

        Each wrapper logs the command, NETKIT_AGENT_SOCKET as the plugin received it and the command line of
        the process that exec'd it, then execs the real plugin.
        """
        probe_dir = os.path.join(self.tmp, "probe", "bin")
        log = os.path.join(self.tmp, "probe", "exec.log")
        os.makedirs(probe_dir)
        for plugin in PROBED:
            path = os.path.join(probe_dir, plugin)
            with open(path, "w") as f:
                f.write(f"""#!/bin/sh
printf '%s\\t%s\\t%s\\t%s\\n' {plugin} "$CNI_COMMAND" "${{{agent_protocol.ENV_SOCKET}-<unset>}}" \\
    "$(tr '\\0' ' ' < /proc/$PPID/cmdline)" >> {shlex.quote(log)}
exec {shlex.quote(os.path.join(bin_dir, plugin))} "$@"
""")
            os.chmod(path, 0o755)
        before = self.agent.counters() if self.agent else (0, 0)
        port = self.next_port()
        argv = self.argv("probe", "run", "--rm", "--network", self.network[NETKIT], "-p", f"{port}:{CONTAINER_PORT}",
                         self.image, "true")
        self.timed("probe", argv)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.leases(NETKIT):
            time.sleep(0.1)
        if self.agent:
            after = self.agent.counters()
            self.probe_agent = (after[0] - before[0], after[1] - before[1])
        with open(log) as f:
            for line in f:
                plugin, command, sock, parent = line.rstrip("\n").split("\t", 3)
                if "container cleanup" in parent:
                    caller = "podman container cleanup (conmon)"
                elif " run " in f" {parent} ":
                    caller = "podman run"
                elif "netkit-bridge" in parent:
                    caller = "netkit-bridge (IPAM delegation)"
                elif "netkit agent" in parent:
                    caller = "the agent (netkit-bridge's IPAM delegation)"
                else:
                    caller = parent[:60]
                self.probe.append({"plugin": plugin, "command": command, "socket": sock, "caller": caller})
        if not any(p["command"] == "ADD" for p in self.probe) or not any(p["command"] == "DEL" for p in self.probe):
            raise BenchError(f"env check: the wrappers did not see both ADD and DEL: {self.probe}")

    # ---- the measurements ------------------------------------------------------------------------------
    def one(self, impl: str, row: str, into: dict[str, dict[str, list[float]]]) -> None:
        conf = impl
        net = ["--network", "none"] if impl == FLOOR else ["--network", self.network[impl]]
        pub = ["-p", f"{self.next_port()}:{CONTAINER_PORT}"] if row == "port" else []
        argv = self.argv(conf, "run", "--rm", *net, *pub, self.image, "true")
        before = self.agent.counters() if self.agent else None
        ms = self.timed(conf, argv)
        if before is not None and self.agent is not None:
            after = self.agent.counters()
            use = self.agent_use.setdefault(impl, {"runs": 0, "runs_with_agent_reads": 0, "cpu_ticks": 0})
            use["runs"] += 1
            use["runs_with_agent_reads"] += after[0] > before[0]
            use["cpu_ticks"] += after[1] - before[1]
        if impl in VARIANTS and self.leases(impl):       # untimed: was the DEL done when podman returned?
            self.lease_left[impl] += 1
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.leases(impl):
                time.sleep(0.05)
            if self.leases(impl):
                raise BenchError(f"{impl}: lease {self.leases(impl)} still there 10 s after {self.show(conf, argv)}")
        into.setdefault(row, {NETKIT: [], REFERENCE: [], FLOOR: []})[impl].append(ms)
        self.commands.setdefault(f"{impl} {row}", self.show(conf, argv))

    def one_round(self, i: int, into: dict[str, dict[str, list[float]]]) -> None:
        impls = [NETKIT, REFERENCE, FLOOR]
        order = impls[i % 3:] + impls[:i % 3]          # rotate who goes first, round to round
        for row in ROWS:
            for impl in order:
                if impl == FLOOR and row == "port":
                    continue
                self.one(impl, row, into)

    def run(self) -> None:
        for i in range(self.warmup):
            self.one_round(i, self.warmup_samples)
        if self.agent:
            self.agent_use.clear()                     # count the measured rounds only
        for variant in VARIANTS:
            self.lease_left[variant] = 0
        try:
            for i in range(self.runs):
                self.one_round(i, self.samples)
                print(f"\r  round {i + 1}/{self.runs}", end="", file=sys.stderr, flush=True)
        finally:
            print(file=sys.stderr)

    def sanity(self) -> list[str]:
        """After all runs: no container, lease, veth, per-attachment chain or DNAT of a used port left."""
        problems = []
        left = self.podman(FLOOR, "ps", "-aq", check=False).stdout.split()     # one storage: every container
        if left:
            problems.append(f"podman containers left: {left}")
        for variant in VARIANTS:
            if self.leases(variant):
                problems.append(f"{variant}: leases left: {self.leases(variant)}")
            bridge = self.conflists[variant]["plugins"][0]["bridge"]
            links = ns_links(self.sandbox[variant])
            if links != sorted(["lo", bridge]):
                problems.append(f"{variant} sandbox {self.sandbox[variant]}: links {links}, expected lo and {bridge}")
            text = nat_text(self.sandbox[variant])
            chains = attachment_chains(text)
            if chains:
                problems.append(f"{variant}: per-attachment chains left: {chains[:6]}")
            dnat = [p for p in self.ports if has_dnat(text, p)]
            if dnat:
                problems.append(f"{variant}: DNAT left for host ports {dnat[:6]}")
        if ns_links(self.sandbox[FLOOR]) != ["lo"]:
            problems.append(f"floor sandbox: links {ns_links(self.sandbox[FLOOR])}")
        return problems

    # ---- teardown --------------------------------------------------------------------------------------
    def our_processes(self) -> dict[int, str]:
        """Processes of this run (see benchlib.processes_of_run)."""
        return processes_of_run(self.tmp, self.sandbox_inodes)

    def teardown(self) -> None:
        # 1. The agent (a child of ours, by pid).
        if self.agent is not None:
            problem = self.agent.stop()
            if problem:
                self.cleanup_problems.append(problem)
        # 2. Containers, through podman, inside their sandboxes (the CNI DEL needs the sandbox): each with
        #    the configuration of its network (all share one storage), then whatever is left (--network none).
        if self.tmp and os.path.isdir(os.path.join(self.tmp, "graph")) and self.confs:
            for conf in (*VARIANTS, FLOOR):
                if conf not in self.confs or self.conf_sandbox[conf] not in self.made_netns:
                    continue
                flt = ["--filter", f"network={self.network[conf]}"] if conf in VARIANTS else []
                ids = self.podman(conf, "ps", "-aq", "--no-trunc", *flt, check=False).stdout.split()
                if not ids:
                    continue
                keys = self.podman(conf, "inspect", "--format", "{{.NetworkSettings.SandboxKey}}", *ids,
                                   check=False).stdout.split()
                self.container_keys.update(k for k in keys if k.startswith("/run/netns/netns-"))
                self.cleanup_notes.append(f"{conf}: podman containers left at cleanup: {[i[:12] for i in ids]}")
                self.podman(conf, "rm", "-f", "-t", "0", *ids, check=False)
        # 3. Processes of ours still running (conmon's cleanup call finishes just after `rm -f`): wait, then kill.
        deadline = time.monotonic() + 10
        left = self.our_processes()
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = self.our_processes()
        for pid, cmd in left.items():
            self.cleanup_problems.append(f"process {pid} still running after cleanup, killed: {cmd[:200]}")
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        # 4. Mounts under the temp dir (podman's overlay and shm), then the namespaces.
        if self.tmp:
            with open("/proc/self/mountinfo") as f:
                points = [line.split()[4] for line in f]
            for mp in sorted((p for p in points if p.startswith(self.tmp + "/")), key=len, reverse=True):
                if _libc.umount2(mp.encode(), _MNT_DETACH) != 0:
                    self.cleanup_problems.append(f"umount {mp}: {os.strerror(ctypes.get_errno())}")
        for name in self.made_netns:
            proc = ip("netns", "del", name)
            if proc.returncode != 0:
                self.cleanup_problems.append(f"ip netns del {name} failed: {proc.stderr.strip()}")
        self.sandbox_inodes.clear()              # inode numbers are reused once a namespace is gone
        for key in sorted(self.container_keys):  # a container namespace podman did not remove with its container
            if os.path.lexists(key):
                proc = ip("netns", "del", os.path.basename(key))
                self.cleanup_problems.append(f"podman left the container namespace {key}; ip netns del: "
                                             f"exit {proc.returncode}")
        # 5. The temp dir: podman's config, storage, image; the plugins; the leases.
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            if os.path.exists(self.tmp):
                self.cleanup_problems.append(f"could not remove {self.tmp}")
        # 6. What podman made outside it.
        for path in [p for n in self.network.values() for p in glob.glob(f"/var/lib/cni/results/{n}-*")]:
            self.cleanup_problems.append(f"left by podman: {path}")
            with contextlib.suppress(OSError):
                os.unlink(path)
        for cg in sorted(set(glob.glob("/sys/fs/cgroup/*/libpod_parent")) - self.cgroups_before):
            for dirpath, _, _ in sorted(os.walk(cg), key=lambda t: len(t[0]), reverse=True):
                try:
                    os.rmdir(dirpath)
                except OSError as exc:
                    self.cleanup_problems.append(f"rmdir {dirpath}: {exc.strerror}")
            if not os.path.exists(cg):
                self.removed.append(cg)
        for path in sorted(PODMAN_ROOT_PATHS, key=len, reverse=True):         # deepest first: then its parent may go
            if self.paths_before.get(path) or not os.path.lexists(path):
                continue
            try:
                if path in SHARED_PARENTS:
                    os.rmdir(path)               # only if empty: other CNI users may keep files there
                elif os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
                self.removed.append(path)
            except OSError as exc:
                if path in SHARED_PARENTS and exc.errno == errno.ENOTEMPTY:
                    self.cleanup_notes.append(f"{path} was created during this run but holds others' files: kept")
                else:
                    self.cleanup_problems.append(f"could not remove {path}: {exc.strerror}")


# ---- output -----------------------------------------------------------------------------------------------
def table(bench: Bench) -> str:
    floor = summary(bench.samples["plain"][FLOOR])["median"]
    head = (f"{'ms':<52} {'netkit med':>10} {'p95':>7} {'ref med':>8} {'p95':>7} {'ratio':>6}"
            f" {'nk-floor':>9} {'ref-floor':>9} {'ratio':>6}")
    lines = [head, "-" * len(head)]
    for row, label in ROWS.items():
        nk, ref = summary(bench.samples[row][NETKIT]), summary(bench.samples[row][REFERENCE])
        dn, dr = nk["median"] - floor, ref["median"] - floor
        lines.append(f"{label:<52} {nk['median']:>10.1f} {nk['p95']:>7.1f} {ref['median']:>8.1f} {ref['p95']:>7.1f} "
                     f"{nk['median'] / ref['median']:>6.2f} {dn:>9.1f} {dr:>9.1f} "
                     f"{(dn / dr if dr > 0 else float('nan')):>6.2f}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20, help="measured rounds (default 20)")
    ap.add_argument("--warmup", type=int, default=2, help="uncounted rounds first (default 2)")
    ap.add_argument("--agent", action="store_true",
                    help="run `netkit agent --socket <tmp>/agent.sock` and give netkit's plugins that socket")
    ap.add_argument("--no-conmon-env", action="store_true",
                    help="with --agent: set the socket in podman's environment only, not in conmon_env_vars "
                         "(then the DEL, which conmon's `podman container cleanup` runs, does not get it)")
    ap.add_argument("--json", metavar="FILE", help="also write all samples and statistics here")
    args = ap.parse_args()
    if args.runs < 1 or args.warmup < 1:
        ap.error("--runs and --warmup must be at least 1 (the first runs also create the bridges)")
    if args.no_conmon_env and not args.agent:
        ap.error("--no-conmon-env only makes sense with --agent")
    if os.geteuid() != 0:
        ap.error("must run as root (network namespaces, rootful podman)")
    missing = [p for p in ("podman", "runc", "conmon") if shutil.which(p, path=CLEAN_PATH) is None]
    missing += [p for p in (NSENTER, BUSYBOX) if not os.access(p, os.X_OK)]
    missing += [os.path.join(REFERENCE_BIN, p) for p in REFERENCE_PLUGINS
                if not os.access(os.path.join(REFERENCE_BIN, p), os.X_OK)]
    if missing:
        ap.error(f"missing {', '.join(missing)}: apt-get install --no-install-recommends podman runc busybox-static "
                 f"containernetworking-plugins util-linux")

    cmdline = shlex.join(sys.orig_argv)
    print(f"command: {cmdline}")
    with open("/proc/loadavg") as f:
        load_before = " ".join(f.read().split()[:3])
    bench = Bench(args.runs, args.warmup, args.agent, not args.no_conmon_env)
    root_before = root_links()
    machine_agent = os.path.exists(agent_protocol.DEFAULT_SOCKET)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    error: str | None = None
    sanity: list[str] = []
    try:
        bench.setup()
        print(f"sandboxes: {bench.sandbox[NETKIT]} (netkit), {bench.sandbox[REFERENCE]} (reference), "
              f"{bench.sandbox[FLOOR]} (--network none); temp dir {bench.tmp}", flush=True)
        print(f"{args.warmup} warm-up + {args.runs} measured rounds", flush=True)
        bench.run()
        sanity = bench.sanity()
    except KeyboardInterrupt:
        error = "interrupted"
    except (BenchError, OSError, subprocess.SubprocessError) as exc:
        error = str(exc)
    finally:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)   # let cleanup finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            bench.teardown()
        finally:
            signal.signal(signal.SIGINT, old)

    root_after = root_links()
    new_bridges = sorted(n for n, k in root_after.items() if k == "bridge" and n not in root_before)
    if new_bridges:
        bench.cleanup_problems.append(f"new bridges in the root namespace: {new_bridges}")
    ours = sorted(n for n in root_after if n.startswith((bench.tag, "cni-podman")) and n not in root_before)
    if ours:
        bench.cleanup_problems.append(f"new cni-podman*/{bench.tag}* links in the root namespace: {ours}")
    left_ns = sorted(n for n in netns_names() if n.startswith(bench.tag))
    if left_ns:
        bench.cleanup_problems.append(f"namespaces still present after cleanup: {left_ns}")
    left_procs = bench.our_processes()
    if left_procs:
        bench.cleanup_problems.append(f"processes of this run still present: {left_procs}")
    if bench.agent and bench.agent.proc and bench.agent.proc.poll() is None:
        bench.cleanup_problems.append(f"netkit agent {bench.agent.proc.pid} still running")
    if os.path.exists(bench.agent_socket) and bench.use_agent:
        bench.cleanup_problems.append(f"agent socket {bench.agent_socket} left")
    new_netns = sorted(n for n in netns_names() - bench.netns_before if n.startswith("netns-"))
    if new_netns:
        bench.cleanup_notes.append(f"netns-* namespaces that appeared during the run and are not ours (another "
                                   f"podman on this machine?), left alone: {new_netns}")

    for note in bench.cleanup_notes:
        print(f"cleanup: {note}", file=sys.stderr)
    for problem in bench.cleanup_problems:
        print(f"CLEANUP PROBLEM: {problem}", file=sys.stderr)
    for problem in sanity:
        print(f"SANITY PROBLEM: {problem}", file=sys.stderr)
    if error is not None:
        print(f"benchmark aborted: {error}", file=sys.stderr)
        return 1

    mode = "in-process (NETKIT_AGENT_SOCKET points where nothing listens)"
    if args.agent:
        mode = ("via `netkit agent` (socket in podman's environment" +
                (" and in conmon_env_vars)" if bench.conmon_env else " only, not in conmon_env_vars)"))
    floor = summary(bench.samples["plain"][FLOOR])
    print()
    print(f"{args.runs} interleaved rounds (+{args.warmup} warm-up), ms; kernel {platform.release()}, "
          f"{os.cpu_count()} CPUs; netkit {NETKIT_VERSION}, podman {bench.versions.get('podman')} "
          f"({bench.versions.get('runc')}, CNI backend, overlay storage)")
    with open("/proc/loadavg") as f:
        load_after = " ".join(f.read().split()[:3])
    print(f"netkit plugins: {mode}")
    print(f"load average (1, 5, 15 min) at start {load_before}, at end {load_after}")
    print(f"floor `run --rm --network none IMAGE true`: median {floor['median']:.1f}, p95 {floor['p95']:.1f}")
    print()
    print(table(bench))
    print()
    print("median and p95 of the wall time of the podman command (under nsenter); ratio = netkit / reference;")
    print("x-floor = median minus the floor's median (what the network costs podman run, setup and teardown).")
    left = ", ".join(f"{v} {bench.lease_left[v]}/{2 * args.runs}" for v in VARIANTS)
    print(f"runs whose lease was still there when podman returned (DEL not inside the time): {left}")
    print()
    print("env check (one untimed run of the -p command on netkit's network, wrappers logging each plugin exec):")
    for p in bench.probe:
        print(f"  {p['plugin']:<15} {p['command']:<8} exec'd by {p['caller']:<44} "
              f"{agent_protocol.ENV_SOCKET}={p['socket']}")
    if bench.agent is not None:
        reads, ticks = bench.probe_agent
        print(f"  agent during that run: {reads} read syscalls, {ticks * 1000 // CLK_TCK} ms CPU")
        print("agent activity per measured podman command (read syscalls and CPU time of the agent process, "
              "exited request threads included):")
        for impl in (NETKIT, REFERENCE, FLOOR):
            use = bench.agent_use.get(impl, {"runs": 0, "runs_with_agent_reads": 0, "cpu_ticks": 0})
            print(f"  {impl:<10} agent read in {use['runs_with_agent_reads']}/{use['runs']} runs, "
                  f"{use['cpu_ticks'] * 1000 // CLK_TCK} ms CPU in total")
        if bench.agent.rusage is not None:
            ru = bench.agent.rusage
            print(f"  agent total CPU over its life (wait4): {(ru.ru_utime + ru.ru_stime) * 1000:.0f} ms")
    if machine_agent:
        print(f"note: {agent_protocol.DEFAULT_SOCKET} exists on this machine; a plugin that does not get "
              f"{agent_protocol.ENV_SOCKET} would use it")
    print()
    print("checks before the rounds:")
    for line in bench.checks:
        print(f"  {line}")
    print()
    print("commands (first round; HOSTPORT changes every run):")
    for what, line in bench.commands.items():
        print(f"  {what}: {line}")
    if bench.removed:
        print(f"removed what podman made outside the temp dir: {', '.join(bench.removed)}")

    if args.json:
        doc = {
            "command": cmdline, "runs": args.runs, "warmup_rounds": args.warmup, "agent": args.agent,
            "conmon_env": bench.conmon_env if args.agent else None, "netkit_mode": mode,
            "machine": {"kernel": platform.release(), "cpus": os.cpu_count(), "python": platform.python_version(),
                        "loadavg_start": load_before, "loadavg_end": load_after},
            "versions": {"netkit": NETKIT_VERSION, **bench.versions}, "unit": "ms",
            "conflists": bench.conflists,
            "rows": {row: {"label": ROWS[row], **{impl: {"summary": summary(v), "samples": v}
                                                  for impl, v in bench.samples[row].items() if v}}
                     for row in ROWS},
            "warmup_samples": bench.warmup_samples, "lease_left_at_return": bench.lease_left,
            "env_check": bench.probe, "agent_use": bench.agent_use, "checks": bench.checks,
            "commands": bench.commands, "sanity_problems": sanity, "cleanup_problems": bench.cleanup_problems,
            "removed_podman_paths": bench.removed,
        }
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
        print(f"wrote {args.json}")
    return 1 if (bench.cleanup_problems or sanity) else 0


if __name__ == "__main__":
    sys.exit(main())
