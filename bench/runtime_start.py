#!/usr/bin/env python3
"""Container start-up of netkit's runtime against podman, measured side by side in one run.

Run as root from the repository root::

    .venv/bin/python bench/runtime_start.py [--runs 10] [--warmup 1] [--no-podman] [--json out.json]

Measures (1) the time from spawning ``netkit run -d -p HOSTPORT:80 -- python3 -m http.server 80`` to
that published port answering an HTTP GET on 127.0.0.1:HOSTPORT, and (2) the wall time of
``netkit run --rm --net=none -- true`` and ``netkit run --rm -- true``; and the same with Debian's
podman 4.3 (CNI network backend, runc, an image imported from busybox-static), if it can be set up.

Everything happens in throwaway sandbox "host" network namespaces made for this run (``nkr<random>-n``
for netkit, ``nkr<random>-p`` for podman: their firewall rules never share a namespace); each runtime
command runs as ``nsenter --net=/run/netns/SANDBOX ...`` (not ``ip netns exec``, whose private mount
namespace would hide the runtimes' netns bind mounts), so bridges, veths and NAT rules land there,
and the HTTP client polls from inside the sandbox too.  netkit gets its own ``--root`` and podman its
own containers.conf and storage, all under one temp dir.  Everything is deleted in a ``finally``
(Ctrl-C and SIGTERM included) and the script checks afterwards that nothing is left.  Installs
podman, runc and busybox-static with apt-get if they are missing.  See bench/README.md.  Not part of
the test suite.
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
import resource
import secrets
import selectors
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from typing import Any

import benchlib  # noqa: E402 - bench/ is on sys.path
from benchlib import AgentOfTheRun, run, ip, netns_names, root_links, pct, summary, processes_of_run  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from netkit import __version__ as NETKIT_VERSION  # noqa: E402
from netkit.net import netns as nk_netns  # noqa: E402

NETKIT, PODMAN = "netkit", "podman"
IMPLS = (NETKIT, PODMAN)
NSENTER = "/usr/bin/nsenter"
# Every runtime command gets this PATH (and HOME), nothing else from our environment: a container's
# `python3` must be Debian's /usr/bin/python3, not a version manager's shim earlier in the caller's PATH.
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUSYBOX = "/bin/busybox"                      # from busybox-static: statically linked
PODMAN_PACKAGES = ("podman", "runc", "busybox-static")
PODMAN_ROOT_PATHS = (                         # what rootful podman writes outside our temp dir, whatever its config
    "/var/lib/containers", "/var/lib/containers/cache", "/var/lib/containers/cache/blob-info-cache-v1.boltdb",
    "/var/lib/cni", "/var/lib/cni/networks", "/var/lib/cni/networks/podman", "/var/lib/cni/results",
    "/run/runc", "/run/containers", "/run/libpod", "/dev/shm/libpod_lock",
)
PODMAN_NPROC_CAP = 32768                      # podman sets its own RLIMIT_NPROC to this
SHARED_PARENTS = {"/var/lib/cni", "/var/lib/cni/networks", "/var/lib/cni/results", "/run/runc"}  # rmdir if empty, never rmtree
CONTAINER_PORT = 80
PORT_BASE = {"http-python": 18000, "http-busybox": 17000, "http-podman": 19000}   # + run number (warm-up included)
POLL_INTERVAL_S = 0.005                       # a new connect+GET attempt every 5 ms
ATTEMPT_TIMEOUT_S = 0.5                       # an attempt with no HTTP status line by then is dropped
READY_DEADLINE_S = 30.0
EXEC_TIMEOUT_S = 120
REQUEST = b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
INDEX = b"<html><body>netkit bench</body></html>\n"

# Rows: key -> label.  "ready" rows are spawn of `run -d -p` to the first HTTP answer.
ROWS = {
    "ready": "HTTP answers after `run -d -p` (a)",
    "ready_same": "HTTP answers, busybox httpd in both (b)",
    "run_d": "`run -d -p` command returns (a)",
    "rm_f": "`rm -f` running container (c)",
    "true_none": "`run --rm --net=none -- true`",
    "true_bridge": "`run --rm -- true` (bridge)",
}
_libc = ctypes.CDLL(None, use_errno=True)
_MNT_DETACH = 2


class BenchError(benchlib.BenchError):
    """Something failed: the numbers would be meaningless."""

    def __init__(self, msg: str, impl: str = "") -> None:
        super().__init__(msg)
        self.impl = impl


class PodmanUnavailable(RuntimeError):
    """podman could not be set up here; the run goes on with netkit alone and says why."""


def ns_links(ns: str) -> list[str]:
    out = ip("netns", "exec", ns, "ip", "-j", "link", "show").stdout
    return sorted(link["ifname"] for link in json.loads(out or "[]"))


def tail(text: str | bytes, n: int = 400) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    text = " ".join(text.split())
    return text if len(text) <= n else "..." + text[-n:]


# ---- the HTTP poller ---------------------------------------------------------------------------------
class Poller:
    """Polls http://127.0.0.1:PORT/ from inside a network namespace, on a thread of its own.

    Once started it enters the namespace (``netkit.net.netns.entered``: this thread only), then waits
    for ``go``.  From then on it opens a new non-blocking connection every POLL_INTERVAL_S, sends a GET
    when it connects, and stops at the first HTTP status line; each attempt is dropped after
    ATTEMPT_TIMEOUT_S.  Attempts overlap, so one that hangs (podman's conmon holds the host port open
    before the DNAT rule exists: a connection can land in its never-accepted queue) costs nothing but
    that attempt: the resolution stays 5 ms.
    """

    def __init__(self, netns_path: str, port: int) -> None:
        self.netns_path, self.port = netns_path, port
        self.ready, self.go, self.stop = threading.Event(), threading.Event(), threading.Event()
        self.t_answer: int | None = None           # perf_counter_ns of the first status line
        self.status = ""
        self.error = ""
        self.attempts = self.refused = self.dropped = self.timed_out = 0
        self.thread = threading.Thread(target=self._main, daemon=True)

    def start(self) -> None:
        self.thread.start()
        if not self.ready.wait(10) or self.error:
            raise BenchError(f"HTTP poller could not start: {self.error or 'timeout'}")

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    def _main(self) -> None:
        try:
            with nk_netns.entered(self.netns_path):
                self.ready.set()
                while not self.go.wait(0.05):
                    if self.stop.is_set():
                        return
                self._poll()
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            self.error = f"{type(exc).__name__}: {exc}"
            self.ready.set()

    def _poll(self) -> None:
        sel = selectors.DefaultSelector()
        pending: dict[socket.socket, list[Any]] = {}    # sock -> [started, sent, buffer]

        def drop(s: socket.socket) -> None:
            with contextlib.suppress(KeyError, ValueError):
                sel.unregister(s)
            pending.pop(s, None)
            s.close()

        start = time.perf_counter()
        next_at = start
        try:
            while not self.stop.is_set():
                now = time.perf_counter()
                if now - start > READY_DEADLINE_S:
                    self.error = f"no HTTP answer on 127.0.0.1:{self.port} within {READY_DEADLINE_S:.0f} s"
                    return
                if now >= next_at:
                    next_at = max(next_at + POLL_INTERVAL_S, now)
                    self.attempts += 1
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    s.setblocking(False)
                    err = s.connect_ex(("127.0.0.1", self.port))
                    if err in (0, errno.EINPROGRESS):
                        pending[s] = [now, False, b""]
                        sel.register(s, selectors.EVENT_WRITE)
                    else:
                        self.refused += 1
                        s.close()
                for key, _ in sel.select(max(0.0, next_at - time.perf_counter())):
                    s = key.fileobj  # type: ignore[assignment]
                    st = pending.get(s)
                    if st is None:
                        continue
                    if not st[1]:
                        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            self.refused += 1
                            drop(s)
                            continue
                        try:
                            s.send(REQUEST)
                        except OSError:
                            self.dropped += 1
                            drop(s)
                            continue
                        st[1] = True
                        sel.modify(s, selectors.EVENT_READ)
                        continue
                    try:
                        data = s.recv(4096)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:                  # reset or closed before a status line
                        self.dropped += 1
                        drop(s)
                        continue
                    st[2] += data
                    if b"\r\n" in st[2]:
                        t = time.perf_counter_ns()
                        line = st[2].split(b"\r\n", 1)[0].decode(errors="replace")
                        if line.startswith("HTTP/"):
                            self.t_answer, self.status = t, line
                            return
                        self.dropped += 1
                        drop(s)
                now = time.perf_counter()
                for s, st in list(pending.items()):
                    if now - st[0] > ATTEMPT_TIMEOUT_S:
                        self.timed_out += 1
                        drop(s)
        finally:
            for s in list(pending):
                drop(s)
            sel.close()


# ---- statistics and output -------------------------------------------------------------------------
class Bench(AgentOfTheRun):
    def __init__(self, runs: int, warmup: int, want_podman: bool, use_agent: bool = False) -> None:
        self.runs, self.warmup, self.want_podman, self.use_agent = runs, warmup, want_podman, use_agent
        self.agent_cpu_s = 0.0
        while True:
            self.tag = f"nkr{secrets.token_hex(3)}"
            if not any(n.startswith(self.tag) for n in netns_names()):
                break
        self.sandbox = {NETKIT: f"{self.tag}-n", PODMAN: f"{self.tag}-p"}
        self.netns_before = netns_names()
        self.made_netns: list[str] = []
        self.sandbox_inodes: set[int] = set()
        self.tmp = ""
        self.nk_root = self.www = self.pm_dir = ""
        self.netkit_exe = os.path.join(os.path.dirname(sys.executable), "netkit")
        self.python = shutil.which("python3", path=CLEAN_PATH) or "python3"
        self.podman_ok = False
        self.podman_skip_reason = "" if want_podman else "--no-podman"
        self.podman_env: dict[str, str] = {}
        self.podman_paths_before: dict[str, bool] = {}
        self.podman_cgroups_before: set[str] = set()
        self.podman_removed: list[str] = []
        self.podman_image = f"localhost/{self.tag}-busybox:latest"
        self.versions: dict[str, str] = {}
        self.seq = 0                                   # run number: container names and host ports
        self.nk_names: list[str] = []
        self.pm_names: list[str] = []
        self.samples: dict[str, dict[str, list[float]]] = {}
        self.warmup_samples: dict[str, dict[str, list[float]]] = {}
        self.baseline: list[float] = []
        self.poll_stats: dict[str, list[dict[str, Any]]] = {NETKIT: [], PODMAN: []}
        self.commands: dict[str, str] = {}
        self.cleanup_problems: list[str] = []
        self.cleanup_notes: list[str] = []

    # ---- namespaces and commands -----------------------------------------------------------------------
    def netns_add(self, name: str) -> None:
        proc = ip("netns", "add", name)
        if proc.returncode != 0:
            raise BenchError(f"ip netns add {name} failed: {proc.stderr.strip()}")
        self.made_netns.append(name)
        self.sandbox_inodes.add(os.stat(f"/run/netns/{name}").st_ino)
        proc = ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        if proc.returncode != 0:
            raise BenchError(f"bringing lo up in {name} failed: {proc.stderr.strip()}")

    def env(self, impl: str) -> dict[str, str]:
        env = {"PATH": CLEAN_PATH, "HOME": os.environ.get("HOME", "/root")}
        if impl == PODMAN:
            env.update(self.podman_env)
        else:  # never a machine-wide agent: this run's (--agent), or a path where none listens
            env["NETKIT_AGENT_SOCKET"] = self.agent_sock if self.use_agent else "/nonexistent/netkit-agent.sock"
        return env

    def argv(self, impl: str, *args: str) -> list[str]:
        ns = f"--net=/run/netns/{self.sandbox[impl]}"
        if impl == NETKIT:
            return [NSENTER, ns, self.netkit_exe, "--root", self.nk_root, *args]
        return [NSENTER, ns, "podman", *args]

    def show(self, impl: str, argv: list[str]) -> str:
        """The command as a shell line, podman's config variables in front."""
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.podman_env.items()) + " " if impl == PODMAN else ""
        cwd = f"(cd {shlex.quote(self.www)} && " if impl == NETKIT else ""
        return f"{cwd}{prefix}{shlex.join(argv)}{')' if cwd else ''}"

    def timed(self, impl: str, argv: list[str], before: Any = None) -> tuple[float, int, str, str, int]:
        """Wall time in ms from spawning argv to its exit; (ms, status, stdout, stderr, t0 ns).

        The child gets a session of its own, so a Ctrl-C reaches this script only; then the child is
        left to finish (killed only after EXEC_TIMEOUT_S) and the interrupt goes on to the cleanup.
        ``before`` is called right before the spawn (the HTTP poller's go).
        """
        cwd = self.www if impl == NETKIT else self.tmp
        env = self.env(impl)
        if before is not None:
            before()
        t0 = time.perf_counter_ns()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, cwd=cwd, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=EXEC_TIMEOUT_S)
        except BaseException:
            try:
                proc.communicate(timeout=EXEC_TIMEOUT_S)
            except BaseException:
                proc.kill()
                proc.wait()
            raise
        t1 = time.perf_counter_ns()
        return (t1 - t0) / 1e6, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"), t0

    def must(self, impl: str, argv: list[str], what: str) -> tuple[float, str]:
        ms, code, out, err, _ = self.timed(impl, argv)
        if code != 0:
            raise BenchError(f"{what} failed (exit {code}): {self.show(impl, argv)}: {tail(err or out)}", impl)
        return ms, out

    # ---- podman setup ---------------------------------------------------------------------------------
    @staticmethod
    def _podman_missing() -> list[str]:
        missing = [p for p in ("podman", "runc") if shutil.which(p, path=CLEAN_PATH) is None]
        status = run(["dpkg-query", "-W", "-f=${Status}", "busybox-static"]).stdout
        if "install ok installed" not in status or not os.path.exists(BUSYBOX):
            missing.append("busybox-static")
        return missing

    def ensure_podman_packages(self) -> None:
        missing = self._podman_missing()
        if not missing:
            return
        argv = ["apt-get", "install", "-y", "--no-install-recommends", *PODMAN_PACKAGES]
        print(f"podman setup: missing {', '.join(missing)}: {shlex.join(argv)}", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        proc = run(argv, timeout=900, env=env)
        if proc.returncode != 0:
            print("apt-get install failed; apt-get update, then once more", flush=True)
            run(["apt-get", "update"], timeout=900, env=env)
            proc = run(argv, timeout=900, env=env)
        missing = self._podman_missing()
        if proc.returncode != 0 or missing:
            raise PodmanUnavailable(f"apt-get install {' '.join(PODMAN_PACKAGES)} failed "
                                    f"(still missing: {', '.join(missing)}): {tail(proc.stderr)}")

    def _podman_conf(self) -> None:
        d = self.pm_dir
        for sub in ("graph", "run", "tmp", "net.d"):
            os.makedirs(os.path.join(d, sub))
        # A container's limits may not exceed the hard limits of the runc that sets them (root here lacks
        # CAP_SYS_RESOURCE): ours for nofile; for nproc podman lowers its own to 32768 (podman 4.3,
        # measured: 32769 fails with "error setting rlimit type 6"), and its children inherit that.
        nofile, nproc = (resource.getrlimit(r)[1] for r in (resource.RLIMIT_NOFILE, resource.RLIMIT_NPROC))
        nproc = PODMAN_NPROC_CAP if nproc == resource.RLIM_INFINITY else min(nproc, PODMAN_NPROC_CAP)
        lim = {"nofile": "-1" if nofile == resource.RLIM_INFINITY else str(nofile), "nproc": str(nproc)}
        conf = f"""# Written by bench/runtime_start.py for one run; removed with it.
[containers]
default_ulimits = ["nofile={lim['nofile']}:{lim['nofile']}", "nproc={lim['nproc']}:{lim['nproc']}"]

[network]
network_backend = "cni"
cni_plugin_dirs = ["/usr/lib/cni"]
network_config_dir = "{d}/net.d"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{d}/tmp"
image_copy_tmp_dir = "{d}/tmp"
lock_type = "file"
"""
        storage = f"""[storage]
driver = "overlay"
graphroot = "{d}/graph"
runroot = "{d}/run"
"""
        with open(os.path.join(d, "containers.conf"), "w") as f:
            f.write(conf)
        with open(os.path.join(d, "storage.conf"), "w") as f:
            f.write(storage)
        self.podman_env = {"CONTAINERS_CONF": os.path.join(d, "containers.conf"),
                           "CONTAINERS_STORAGE_CONF": os.path.join(d, "storage.conf")}
        self.podman_ulimits = lim

    def _rootfs_tar(self) -> str:
        """bin/busybox (static) with sh, true and httpd links, and /index.html for httpd to serve."""
        path = os.path.join(self.pm_dir, "rootfs.tar")
        with tarfile.open(path, "w") as tar:
            def add_dir(name: str) -> None:
                ti = tarfile.TarInfo(name)
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(ti)
            for name in ("bin", "etc", "proc", "sys", "dev", "tmp"):
                add_dir(name)
            tar.add(BUSYBOX, arcname="bin/busybox")
            for applet in ("sh", "true", "httpd"):
                ti = tarfile.TarInfo(f"bin/{applet}")
                ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, "busybox", 0o777
                tar.addfile(ti)
            for name, body in (("index.html", INDEX), ("etc/passwd", b"root:x:0:0:root:/:/bin/sh\n"),
                               ("etc/group", b"root:x:0:\n")):
                ti = tarfile.TarInfo(name)
                ti.size, ti.mode = len(body), 0o644
                tar.addfile(ti, io.BytesIO(body))
        return path

    def setup_podman(self) -> None:
        self.ensure_podman_packages()
        self.podman_paths_before = {p: os.path.lexists(p) for p in PODMAN_ROOT_PATHS}
        self.podman_cgroups_before = set(glob.glob("/sys/fs/cgroup/*/libpod_parent"))
        self.pm_dir = os.path.join(self.tmp, "podman")
        os.makedirs(self.pm_dir)
        self._podman_conf()
        self.netns_add(self.sandbox[PODMAN])
        tar = self._rootfs_tar()
        argv = self.argv(PODMAN, "import", tar, self.podman_image)
        ms, code, out, err, _ = self.timed(PODMAN, argv)
        if code != 0:
            raise PodmanUnavailable(f"{self.show(PODMAN, argv)} failed (exit {code}): {tail(err or out)}")
        out = run(self.argv(PODMAN, "version", "--format", "{{.Client.Version}}"), env=self.env(PODMAN),
                  cwd=self.tmp).stdout.strip()
        self.versions["podman"] = out or "?"
        self.versions["runc"] = (run(["runc", "--version"]).stdout.splitlines() or ["?"])[0]
        self.commands["podman import"] = self.show(PODMAN, argv)
        self.podman_ok = True

    # ---- setup / teardown ------------------------------------------------------------------------------
    def setup(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix=f"{self.tag}-")
        self.nk_root = os.path.join(self.tmp, "netkit-root")
        self.www = os.path.join(self.tmp, "www")           # netkit containers' cwd: what their servers serve
        os.makedirs(self.www)
        with open(os.path.join(self.www, "index.html"), "wb") as f:
            f.write(INDEX)
        self.netns_add(self.sandbox[NETKIT])
        if self.use_agent:
            self.start_agent()
        proc = run([self.python, "--version"])
        self.versions["container python3"] = f"{self.python} ({(proc.stdout or proc.stderr).strip()})"
        if self.want_podman:
            try:
                self.setup_podman()
            except PodmanUnavailable as exc:
                self.podman_skip_reason = str(exc)
            except (OSError, subprocess.SubprocessError) as exc:
                self.podman_skip_reason = f"podman setup failed: {exc}"
        self.have_busybox = os.path.exists(BUSYBOX)

    def _our_processes(self) -> dict[int, str]:
        """Processes of this run (see benchlib.processes_of_run)."""
        return processes_of_run(self.tmp, self.sandbox_inodes)

    def _unmount_under_tmp(self) -> None:
        if not self.tmp:
            return
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
        for mp in sorted((p for p in points if p.startswith(self.tmp + "/")), key=len, reverse=True):
            if _libc.umount2(mp.encode(), _MNT_DETACH) != 0:
                self.cleanup_problems.append(f"umount {mp}: {os.strerror(ctypes.get_errno())}")

    def teardown(self) -> None:
        # 1. Containers, through their runtimes, inside their sandboxes (network DEL needs the sandbox).
        if self.nk_root and os.path.isdir(os.path.join(self.nk_root, "containers")):
            for cid in os.listdir(os.path.join(self.nk_root, "containers")):
                proc = run(self.argv(NETKIT, "rm", "-f", cid), env=self.env(NETKIT), cwd=self.www)
                self.cleanup_notes.append(f"netkit container {cid[:12]} left at cleanup: rm -f exit {proc.returncode}")
        if self.podman_env and self.sandbox[PODMAN] in self.made_netns:
            proc = run(self.argv(PODMAN, "ps", "-aq"), env=self.env(PODMAN), cwd=self.tmp)
            if proc.stdout.strip():
                self.cleanup_notes.append(f"podman containers left at cleanup: {proc.stdout.split()}")
                run(self.argv(PODMAN, "rm", "-a", "-f", "-t", "0"), env=self.env(PODMAN), cwd=self.tmp)
        self.stop_agent()  # its command line names the temp dir: not a leftover process
        # 2. Processes of ours still running (conmon's cleanup call finishes just after `rm -f`): wait, then kill.
        deadline = time.monotonic() + 10
        left = self._our_processes()
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = self._our_processes()
        for pid, cmd in left.items():
            self.cleanup_problems.append(f"process {pid} still running after cleanup, killed: {cmd[:200]}")
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        # 3. Mounts (netkit's netns bind mounts, podman's shm/overlay) under the temp dir, then the namespaces.
        self._unmount_under_tmp()
        for name in self.made_netns:
            proc = ip("netns", "del", name)
            if proc.returncode != 0:
                self.cleanup_problems.append(f"ip netns del {name} failed: {proc.stderr.strip()}")
        self.sandbox_inodes.clear()         # namespace inode numbers are reused once a namespace is gone
        now = netns_names()
        for name in sorted(n for n in now if n.startswith(self.tag)):
            ip("netns", "del", name)
        # podman names a container's namespace netns-<uuid>; one made during this run and still there
        # belongs to a container whose storage is about to go: nothing would ever remove it.
        for name in sorted(n for n in now - self.netns_before if n.startswith("netns-")):
            proc = ip("netns", "del", name)
            self.cleanup_problems.append(f"podman container namespace {name} was left; ip netns del: "
                                         f"exit {proc.returncode}")
        # 4. The temp dir: netkit's root, podman's storage and config.
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            if os.path.exists(self.tmp):
                self.cleanup_problems.append(f"could not remove {self.tmp}")
        # 5. What podman made outside it.
        if self.podman_paths_before:
            self._remove_podman_root_paths()

    def _remove_podman_root_paths(self) -> None:
        for cg in sorted(set(glob.glob("/sys/fs/cgroup/*/libpod_parent")) - self.podman_cgroups_before):
            for dirpath, _, _ in sorted(os.walk(cg), key=lambda t: len(t[0]), reverse=True):
                try:
                    os.rmdir(dirpath)
                except OSError as exc:
                    self.cleanup_problems.append(f"rmdir {dirpath}: {exc.strerror}")
            if not os.path.exists(cg):
                self.podman_removed.append(cg)
        # Deepest first, so a parent that only held what podman made can go too.
        for path in sorted(PODMAN_ROOT_PATHS, key=len, reverse=True):
            if self.podman_paths_before.get(path) or not os.path.lexists(path):
                continue
            try:
                if path in SHARED_PARENTS:
                    os.rmdir(path)                      # only if empty: others (CNI users) may keep files there
                elif os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
                self.podman_removed.append(path)
            except OSError as exc:
                if path in SHARED_PARENTS and exc.errno == errno.ENOTEMPTY:
                    stale = [n for n in os.listdir(path) if n.startswith("podman-")]
                    if stale:
                        self.cleanup_problems.append(f"{path} holds podman entries: {stale[:5]}")
                    else:
                        self.cleanup_notes.append(f"{path} was created during this run but holds others' files: kept")
                else:
                    self.cleanup_problems.append(f"could not remove {path}: {exc.strerror}")

    # ---- the measurements ------------------------------------------------------------------------------
    def _put(self, into: dict[str, dict[str, list[float]]], row: str, impl: str, ms: float) -> None:
        into.setdefault(row, {NETKIT: [], PODMAN: []})[impl].append(ms)

    def http_run(self, impl: str, server: str, into: dict[str, dict[str, list[float]]], row: str,
                 record_side_rows: bool) -> None:
        """run -d -p PORT:80 SERVER; time to the first HTTP answer on 127.0.0.1:PORT; then rm -f."""
        self.seq += 1
        key = "http-podman" if impl == PODMAN else f"http-{server}"
        port = PORT_BASE[key] + self.seq
        name = f"{self.tag}-{'p' if impl == PODMAN else 'n'}{self.seq}"
        if impl == NETKIT:
            cmd = ["python3", "-m", "http.server", str(CONTAINER_PORT)] if server == "python" else \
                  ["busybox", "httpd", "-f", "-p", str(CONTAINER_PORT)]
            argv = self.argv(NETKIT, "run", "-d", "--name", name, "-p", f"{port}:{CONTAINER_PORT}", "--", *cmd)
            rm_argv = self.argv(NETKIT, "rm", "-f", name)
            self.nk_names.append(name)
        else:
            argv = self.argv(PODMAN, "run", "-d", "--name", name, "-p", f"{port}:{CONTAINER_PORT}",
                             self.podman_image, "busybox", "httpd", "-f", "-p", str(CONTAINER_PORT))
            rm_argv = self.argv(PODMAN, "rm", "-f", "-t", "0", name)
            self.pm_names.append(name)
        poller = Poller(f"/run/netns/{self.sandbox[impl]}", port)
        poller.start()
        try:
            ms, code, out, err, t0 = self.timed(impl, argv, before=poller.go.set)
            if code != 0:
                raise BenchError(f"{self.show(impl, argv)} failed (exit {code}): {tail(err or out)}", impl)
            poller.join(READY_DEADLINE_S + 5)
        finally:
            poller.stop.set()
            poller.go.set()
            poller.join(5)
        if poller.t_answer is None:
            raise BenchError(f"{self.show(impl, argv)}: {poller.error or 'the HTTP poller gave no answer'}", impl)
        if poller.status.split()[1:2] != ["200"]:
            raise BenchError(f"{self.show(impl, argv)}: HTTP answer {poller.status!r}, expected 200", impl)
        self._put(into, row, impl, (poller.t_answer - t0) / 1e6)
        self.poll_stats[impl].append({"row": row, "port": port, "attempts": poller.attempts, "refused": poller.refused,
                                      "dropped": poller.dropped, "timed_out": poller.timed_out})
        if record_side_rows:
            self._put(into, "run_d", impl, ms)
        rm_ms, _ = self.must(impl, rm_argv, "rm -f")
        if record_side_rows:
            self._put(into, "rm_f", impl, rm_ms)
        self.commands.setdefault(f"{impl} {row}", self.show(impl, argv))
        self.commands.setdefault(f"{impl} rm", self.show(impl, rm_argv))

    def true_run(self, impl: str, none: bool, into: dict[str, dict[str, list[float]]]) -> None:
        if impl == NETKIT:
            argv = self.argv(NETKIT, "run", "--rm", *(["--net=none"] if none else []), "--", "true")
        else:
            argv = self.argv(PODMAN, "run", "--rm", *(["--network", "none"] if none else []), self.podman_image, "true")
        row = "true_none" if none else "true_bridge"
        ms, _ = self.must(impl, argv, row)
        self._put(into, row, impl, ms)
        self.commands.setdefault(f"{impl} {row}", self.show(impl, argv))

    def one_round(self, i: int, into: dict[str, dict[str, list[float]]], baseline: list[float]) -> None:
        impls = [NETKIT, PODMAN] if self.podman_ok else [NETKIT]
        order = impls if i % 2 == 0 else impls[::-1]    # alternate who goes first
        base_argv = [NSENTER, f"--net=/run/netns/{self.sandbox[NETKIT]}", "/bin/true"]
        ms, _ = self.must(NETKIT, base_argv, "baseline")
        baseline.append(ms)
        self.commands.setdefault("baseline", shlex.join(base_argv))
        for impl in order:
            self.http_run(impl, "python" if impl == NETKIT else "busybox", into, "ready", True)
        if self.have_busybox:
            for impl in order:
                self.http_run(impl, "busybox", into, "ready_same", False)
        for none in (True, False):
            for impl in order:
                self.true_run(impl, none, into)

    def run(self) -> None:
        for i in range(self.warmup):        # first runs create the bridges, page cache: not counted
            try:
                self.one_round(i, self.warmup_samples, [])
            except BenchError as exc:
                if not self.podman_ok or exc.impl != PODMAN:
                    raise
                self.podman_ok = False       # podman fails here: go on with netkit alone and say why
                self.podman_skip_reason = f"podman failed in the warm-up round: {exc}"
                print(f"\n{self.podman_skip_reason}", file=sys.stderr)
                self.one_round(i, self.warmup_samples, [])
        cpu0 = self.agent_cpu() if self.use_agent else 0.0
        try:
            for i in range(self.runs):
                self.one_round(i, self.samples, self.baseline)
                print(f"\r  round {i + 1}/{self.runs}", end="", file=sys.stderr, flush=True)
        finally:
            print(file=sys.stderr)
        if self.use_agent:
            self.check_agent()  # a dead agent would have turned the netkit rows into in-process ones
            self.agent_cpu_s = self.agent_cpu() - cpu0
            if self.agent_cpu_s <= 0:
                raise BenchError("the agent used no CPU time: did netkit's plugins fall back in-process?")

    def sanity(self) -> list[str]:
        """After all runs: no container left in either runtime, no namespace or veth left in a sandbox."""
        problems = []
        left = os.listdir(os.path.join(self.nk_root, "containers")) if os.path.isdir(
            os.path.join(self.nk_root, "containers")) else []
        if left:
            problems.append(f"netkit: container records left: {[c[:12] for c in left]}")
        nsdir = os.path.join(self.nk_root, "netns")
        if os.path.isdir(nsdir) and os.listdir(nsdir):
            problems.append(f"netkit: namespaces left in {nsdir}: {os.listdir(nsdir)[:5]}")
        links = ns_links(self.sandbox[NETKIT])
        if links != ["lo", "netkit0"]:
            problems.append(f"netkit sandbox {self.sandbox[NETKIT]}: links {links}, expected ['lo', 'netkit0']")
        if self.podman_ok:
            out = run(self.argv(PODMAN, "ps", "-aq"), env=self.env(PODMAN), cwd=self.tmp).stdout.split()
            if out:
                problems.append(f"podman: containers left: {out}")
            links = ns_links(self.sandbox[PODMAN])
            if links != ["cni-podman0", "lo"]:
                problems.append(f"podman sandbox {self.sandbox[PODMAN]}: links {links}, expected ['cni-podman0', 'lo']")
        return problems


def table(bench: Bench) -> str:
    pm = bench.podman_ok
    head = f"{'ms':<42} {'netkit med':>10} {'p95':>7} {'podman med':>10} {'p95':>7} {'ratio':>6}"
    lines = [head, "-" * len(head)]
    for row, label in ROWS.items():
        if row not in bench.samples:
            continue
        nk = summary(bench.samples[row][NETKIT])
        cell = f"{label:<42} {nk['median']:>10.1f} {nk['p95']:>7.1f}"
        if pm and bench.samples[row][PODMAN]:
            p = summary(bench.samples[row][PODMAN])
            cell += f" {p['median']:>10.1f} {p['p95']:>7.1f} {nk['median'] / p['median']:>6.2f}"
        else:
            cell += f" {'-':>10} {'-':>7} {'-':>6}"
        lines.append(cell)
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10, help="measured rounds (default 10)")
    ap.add_argument("--warmup", type=int, default=1, help="uncounted rounds first (default 1)")
    ap.add_argument("--no-podman", action="store_true", help="measure netkit alone")
    ap.add_argument("--agent", action="store_true",
                    help="netkit's plugins answered by a warm `netkit agent` this run starts (as `netkit cni "
                         "install --agent` sets up); default: in-process, no agent")
    ap.add_argument("--json", metavar="FILE", help="also write all samples and statistics here")
    args = ap.parse_args()
    if args.runs < 1 or args.warmup < 1:
        ap.error("--runs and --warmup must be at least 1 (the first runs also create the bridges)")
    if os.geteuid() != 0:
        ap.error("must run as root (network namespaces)")
    if not os.access(NSENTER, os.X_OK):
        ap.error(f"{NSENTER} not found (apt-get install util-linux)")

    cmdline = shlex.join(sys.orig_argv)
    print(f"command: {cmdline}")
    bench = Bench(args.runs, args.warmup, not args.no_podman, args.agent)
    if not os.access(bench.netkit_exe, os.X_OK):
        ap.error(f"{bench.netkit_exe} not found: run this with the venv's python (.venv/bin/python)")
    root_before = root_links()

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    error: str | None = None
    sanity: list[str] = []
    try:
        bench.setup()
        print(f"sandbox host netns: {bench.sandbox[NETKIT]} (netkit, --root {bench.nk_root})"
              + (f", {bench.sandbox[PODMAN]} (podman)" if bench.podman_ok else ""), flush=True)
        if not bench.podman_ok:
            print(f"podman skipped: {bench.podman_skip_reason}", flush=True)
        print(f"{args.warmup} warm-up + {args.runs} measured rounds", flush=True)
        bench.run()
        sanity = bench.sanity()
    except KeyboardInterrupt:
        error = "interrupted"
    except (benchlib.BenchError, OSError, subprocess.SubprocessError) as exc:
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
    ours = sorted(n for n in root_after if n.startswith((bench.tag, "cni-podman", "netkit")) and n not in root_before)
    if ours:
        bench.cleanup_problems.append(f"new cni-podman*/netkit*/{bench.tag}* links in the root namespace: {ours}")
    left_ns = sorted(n for n in netns_names() if n.startswith(bench.tag))
    if left_ns:
        bench.cleanup_problems.append(f"namespaces still present after cleanup: {left_ns}")
    left_procs = bench._our_processes()
    if left_procs:
        bench.cleanup_problems.append(f"processes of this run still present: {left_procs}")

    for note in bench.cleanup_notes:
        print(f"cleanup: {note}", file=sys.stderr)
    for problem in bench.cleanup_problems:
        print(f"CLEANUP PROBLEM: {problem}", file=sys.stderr)
    for problem in sanity:
        print(f"SANITY PROBLEM: {problem}", file=sys.stderr)
    if error is not None:
        print(f"benchmark aborted: {error}", file=sys.stderr)
        return 1

    base = summary(bench.baseline)
    print()
    print(f"{args.runs} interleaved rounds, ms; kernel {platform.release()}, {os.cpu_count()} CPUs; netkit "
          f"{NETKIT_VERSION}" + (f", podman {bench.versions.get('podman')} ({bench.versions.get('runc')}, CNI "
                                 f"backend, overlay storage)" if bench.podman_ok else "")
          + f"; container python3: {bench.versions['container python3']}")
    print(f"baseline `nsenter --net=SANDBOX /bin/true`: median {base['median']:.1f}, p95 {base['p95']:.1f}")
    print()
    print(table(bench))
    print()
    print("ratio = netkit median / podman median. Times are from spawning the command (under nsenter) to:")
    print("(a) the first HTTP 200 from 127.0.0.1:HOSTPORT inside the sandbox (netkit: python3 -m http.server;")
    print("    podman: busybox httpd), resp. the command's exit; (b) netkit runs the same static busybox httpd as")
    print("    the podman image; (c) netkit rm -f kills with SIGKILL; podman rm -f -t 0 likewise.")
    print(f"Polling: a new connect+GET every {POLL_INTERVAL_S * 1000:.0f} ms, attempts overlap, each dropped "
          f"after {ATTEMPT_TIMEOUT_S * 1000:.0f} ms.")
    if not bench.podman_ok:
        print(f"podman: not measured: {bench.podman_skip_reason}")
    print("netkit's plugins: " + (f"through the warm agent this run started ({bench.agent_cpu_s:.2f} s of its CPU "
                                  f"time over the measured rounds)" if args.agent else "in-process (no agent)"))
    print()
    print("commands (as in the first round; HOSTPORT and NAME change every run):")
    for what, line in bench.commands.items():
        print(f"  {what}: {line}")
    if bench.podman_removed:
        print(f"removed what podman made outside the temp dir: {', '.join(bench.podman_removed)}")

    if args.json:
        doc = {
            "command": cmdline, "runs": args.runs, "warmup_rounds": args.warmup,
            "machine": {"kernel": platform.release(), "cpus": os.cpu_count(), "python": platform.python_version()},
            "versions": {"netkit": NETKIT_VERSION, **bench.versions}, "unit": "ms",
            "netkit_agent": {"used": args.agent, "cpu_s_measured_rounds": bench.agent_cpu_s},
            "podman": {"measured": bench.podman_ok, "skip_reason": bench.podman_skip_reason,
                       "ulimits": getattr(bench, "podman_ulimits", None)},
            "baseline_nsenter_true": {"summary": base, "samples": bench.baseline},
            "rows": {row: {"label": ROWS[row], **{impl: {"summary": summary(v), "samples": v}
                                                  for impl, v in bench.samples[row].items() if v}}
                     for row in ROWS if row in bench.samples},
            "warmup_samples": bench.warmup_samples, "poll_stats": bench.poll_stats, "commands": bench.commands,
            "sanity_problems": sanity, "cleanup_problems": bench.cleanup_problems,
            "removed_podman_paths": bench.podman_removed,
        }
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
        print(f"wrote {args.json}")
    return 1 if (bench.cleanup_problems or sanity) else 0


if __name__ == "__main__":
    sys.exit(main())
