"""podman 4.3 as the CNI client of netkit's plugins: its own configuration, storage and image.

Nothing of the machine's podman setup is used or changed.  podman reads only the suite's files:
``CONTAINERS_CONF`` (runc, cgroupfs, file events and locks, ulimits within the hard limits, the CNI
backend with the suite's plugin and config dirs) and ``CONTAINERS_STORAGE_CONF`` (overlay storage in a
temp dir).  Its one image is imported from a tar of Debian's static busybox (no registry).

Every podman command runs as ``nsenter --net=/run/netns/SANDBOX podman ...`` (not ``ip netns exec``,
whose private mount namespace would hide the netns bind mounts podman makes under /run/netns), so
bridges, veths and firewall rules land in a throwaway sandbox "host" namespace, never in the machine's
own.  Teardown removes the containers, waits for podman's processes, unmounts and deletes the temp
dir, the namespaces, and what rootful podman writes outside its configured dirs whatever its config
(``ROOT_PATHS``, cgroups) when they were not there before.  The knowledge comes from
bench/runtime_start.py, which measures podman the same way.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import errno
import glob
import io
import itertools
import json
import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from netkit.launch import install
from netkit.net import netns
from tests import reach
from tests import sandbox as sb

PACKAGES = ("podman", "runc", "busybox-static")
NSENTER = "/usr/bin/nsenter"
# podman and its children (conmon, runc, the CNI plugins) get this PATH and HOME, nothing else of ours.
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUSYBOX = "/bin/busybox"                      # busybox-static: runs in an image with nothing else
NPROC_CAP = 32768                             # podman 4.3 lowers its own RLIMIT_NPROC to this
EXEC_TIMEOUT_S = 90
ROOT_PATHS = (                                # what rootful podman writes outside our temp dir, whatever its config
    "/var/lib/containers", "/var/lib/containers/cache", "/var/lib/containers/cache/blob-info-cache-v1.boltdb",
    "/var/lib/cni", "/var/lib/cni/networks", "/var/lib/cni/networks/podman", "/var/lib/cni/results",
    "/run/runc", "/run/containers", "/run/libpod", "/dev/shm/libpod_lock",
)
SHARED_PARENTS = {"/var/lib/cni", "/var/lib/cni/networks", "/var/lib/cni/results", "/run/runc"}  # rmdir if empty only

VARIANTS = ("netkit", "reference")
# `podman network create` plugin type -> netkit's drop-in.
NETKIT_TYPES = {"bridge": "netkit-bridge", "host-local": "netkit-ipam", "portmap": "netkit-portmap"}
# netkit has no firewall or tuning plugin: the netkit variant drops these entries (netkit-bridge writes
# its own forward rules, and podman's tuning entry sets nothing); the reference variant keeps them.
NO_NETKIT_PLUGIN = ("firewall", "tuning")
NETWORK = "nkpod"
SUBNET, GATEWAY = "10.89.0.0/24", "10.89.0.1"

ACTIVE: list["Store"] = []                   # stores not yet torn down
_libc = ctypes.CDLL(None, use_errno=True)
_MNT_DETACH = 2


def missing_packages() -> list[str]:
    """Which of PACKAGES (or nsenter) are not installed."""
    missing = [p for p in ("podman", "runc") if shutil.which(p, path=CLEAN_PATH) is None]
    status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "busybox-static"], capture_output=True,
                            text=True).stdout
    if "install ok installed" not in status or not os.path.exists(BUSYBOX):
        missing.append("busybox-static")
    if not os.access(NSENTER, os.X_OK):
        missing.append("util-linux (nsenter)")
    return missing


def tail(text: str, n: int = 600) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else "..." + text[-n:]


@dataclass
class MachineState:
    """What podman may add to the machine outside our temp dir, as it was before the session."""

    paths: dict[str, bool]
    cgroups: set[str]

    @classmethod
    def now(cls) -> "MachineState":
        return cls({p: os.path.lexists(p) for p in ROOT_PATHS}, set(glob.glob("/sys/fs/cgroup/*/libpod_parent")))


class Podman:
    """``podman`` with one containers.conf, run inside one sandbox namespace."""

    def __init__(self, store: "Store", conf: str, ns: sb.Namespace) -> None:
        self.store, self.conf, self.ns = store, conf, ns

    @property
    def env(self) -> dict[str, str]:
        return {"PATH": CLEAN_PATH, "HOME": os.environ.get("HOME", "/root"), "CONTAINERS_CONF": self.conf,
                "CONTAINERS_STORAGE_CONF": self.store.storage_conf}

    def argv(self, *args: str) -> list[str]:
        return [NSENTER, f"--net={self.ns.path}", "podman", *args]

    def show(self, *args: str) -> str:
        """The command as a shell line, to reproduce a failure by hand."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items() if k.startswith("CONTAINERS_"))
        return f"{env} {shlex.join(self.argv(*args))}"

    def __call__(self, *args: str, check: bool = True,
                 timeout: float = EXEC_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        # Once the store is gone, podman would make a fresh one at the same paths: never call it then.
        # (nsenter refuses a namespace that is gone: podman never runs in the machine's own.)
        assert not self.store.done, "podman called after the session's clean-up"
        proc = subprocess.run(self.argv(*args), env=self.env, cwd=self.store.dir, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, start_new_session=True)
        if check and proc.returncode != 0:
            raise AssertionError(f"{self.show(*args)} failed (exit {proc.returncode}): "
                                 f"{tail(proc.stderr or proc.stdout)}")
        return proc

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
        """Remove every container (joiners of another's namespace first); the IDs that were there.

        A container namespace (/run/netns/netns-<uuid>) podman failed to remove with its container is
        removed here and reported: nothing else would ever remove it.  If our sandbox is gone already,
        the containers are removed from a fresh one (their CNI DEL then finds nothing, which is fine).
        """
        if self.store.done:
            return []
        if not os.path.exists(self.ns.path):
            ns = sb.Namespace(sb.unique("p"))
            sb.ip("netns", "add", ns.name)
            self.store.add_namespace(ns)
            return Podman(self.store, self.conf, ns).rm_all()
        ids = self("ps", "-aq", "--no-trunc", check=False).stdout.split()
        if not ids:
            return []
        keys = self("inspect", "--format", "{{.NetworkSettings.SandboxKey}}", *ids, check=False).stdout.split()
        if self("rm", "-a", "-f", "-t", "0", check=False).returncode != 0:
            self("rm", "-a", "-f", "-t", "0", "--depend", check=False)
        for key in sorted(set(keys)):
            if key.startswith("/run/netns/netns-") and os.path.lexists(key):
                proc = sb.ip("netns", "del", os.path.basename(key), check=False)
                self.store.problems.append(f"podman left the container namespace {key} "
                                           f"(ip netns del: exit {proc.returncode})")
        return ids


class Store:
    """The session's podman: temp dir with storage, runroot, tmp dir and configs; the image; netkit's plugins."""

    def __init__(self) -> None:
        self.before = MachineState.now()
        self.dir = tempfile.mkdtemp(prefix=f"{sb.RUN_PREFIX}-podman-")
        self.bin_dir = os.path.join(self.dir, "bin")
        self.storage_conf = os.path.join(self.dir, "storage.conf")
        self.image = f"localhost/{sb.RUN_PREFIX}-busybox:latest"
        self.sandbox = sb.Namespace(sb.unique("p"))      # for the import and the final clean-up
        self.namespaces: list[sb.Namespace] = []          # every sandbox host podman ran in
        self.inodes: set[int] = set()
        self.active: list[Podman] = []                   # podman of every network in use
        self.problems: list[str] = []
        self.done = False

    # ---- setup -------------------------------------------------------------------------------------------
    def add_namespace(self, ns: sb.Namespace) -> None:
        self.namespaces.append(ns)
        self.inodes.add(os.stat(ns.path).st_ino)

    def setup(self) -> None:
        for sub in ("graph", "run", "tmp"):
            os.makedirs(os.path.join(self.dir, sub))
        with open(self.storage_conf, "w") as f:
            f.write(f'[storage]\ndriver = "overlay"\ngraphroot = "{self.dir}/graph"\nrunroot = "{self.dir}/run"\n')
        install.install_plugins(self.bin_dir)
        sb.ip("netns", "add", self.sandbox.name)
        self.add_namespace(self.sandbox)
        self.sandbox.run("ip", "link", "set", "lo", "up", check=True)
        base = self.podman(self.write_conf("base", [sb.REFERENCE_BIN]), self.sandbox)
        base("import", self.rootfs_tar(), self.image)

    def write_conf(self, name: str, plugin_dirs: list[str]) -> str:
        """A containers.conf of ours: every variant shares storage, tmp dir and locks, not its network dirs."""
        net_dir = os.path.join(self.dir, name, "net.d")
        os.makedirs(net_dir)
        # A container's limits may not exceed the hard limits of runc (root lacks CAP_SYS_RESOURCE here):
        # ours for nofile; nproc no higher than what podman lowers its own to.
        nofile, nproc = (resource.getrlimit(r)[1] for r in (resource.RLIMIT_NOFILE, resource.RLIMIT_NPROC))
        nproc = NPROC_CAP if nproc == resource.RLIM_INFINITY else min(nproc, NPROC_CAP)
        nofile_s = "-1" if nofile == resource.RLIM_INFINITY else str(nofile)
        dirs = ", ".join(json.dumps(d) for d in plugin_dirs)
        path = os.path.join(self.dir, name, "containers.conf")
        with open(path, "w") as f:
            f.write(f"""# Written by tests/e2e for one test run; removed with it.
[containers]
default_ulimits = ["nofile={nofile_s}:{nofile_s}", "nproc={nproc}:{nproc}"]

[network]
network_backend = "cni"
cni_plugin_dirs = [{dirs}]
network_config_dir = "{net_dir}"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{self.dir}/tmp"
image_copy_tmp_dir = "{self.dir}/tmp"
lock_type = "file"
""")
        return path

    def podman(self, conf: str, ns: sb.Namespace) -> Podman:
        return Podman(self, conf, ns)

    def rootfs_tar(self) -> str:
        """bin/busybox (static) with a link per applet, /www for httpd, passwd and group."""
        path = os.path.join(self.dir, "rootfs.tar")
        applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
        with tarfile.open(path, "w") as tar:
            for name in ("bin", "etc", "proc", "sys", "dev", "tmp", "www", "root"):
                ti = tarfile.TarInfo(name)
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(ti)
            tar.add(BUSYBOX, arcname="bin/busybox")
            for applet in applets:
                if applet != "busybox":
                    ti = tarfile.TarInfo(f"bin/{applet}")
                    ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, "busybox", 0o777
                    tar.addfile(ti)
            for name, body in (("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"), ("etc/group", b"root:x:0:\n"),
                               ("www/index.html", b"netkit e2e\n")):
                ti = tarfile.TarInfo(name)
                ti.size, ti.mode = len(body), 0o644
                tar.addfile(ti, io.BytesIO(body))
        return path

    # ---- teardown ----------------------------------------------------------------------------------------
    def processes(self) -> dict[int, str]:
        """Processes of ours: living in one of our sandboxes, or with our temp dir in their command line."""
        found = {}
        me = os.getpid()
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == me:
                continue
            pid = int(entry)
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                hit = self.dir in cmd or os.stat(f"/proc/{pid}/ns/net").st_ino in self.inodes
            except OSError:
                continue
            if hit:
                found[pid] = cmd or "?"
        return found

    def wait_processes(self, timeout: float = 60) -> None:
        """conmon's clean-up call may finish just after ``rm -f``: wait for it, then kill what is left.

        ``timeout`` only stops a clean-up that hangs (the wait ends as soon as nothing is left)."""
        deadline = time.monotonic() + timeout
        left = self.processes()
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = self.processes()
        for pid, cmd in left.items():
            self.problems.append(f"process {pid} still running, killed: {cmd[:200]}")
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def teardown(self) -> None:
        """Everything of the session, once (a Ctrl-C calls it early: see conftest.py)."""
        if self.done:
            return
        for pm in self.active:                  # each network's containers with its own config
            pm.rm_all()
        base = self.podman(os.path.join(self.dir, "base", "containers.conf"), self.sandbox)
        if os.path.exists(base.conf) and os.path.exists(os.path.join(self.dir, "graph")):
            left = base.rm_all()
            if left:
                self.problems.append(f"podman containers left at session end: {left}")
        self.done = True
        self.wait_processes()
        self.unmount()
        for ns in self.namespaces:
            sb.ip("netns", "del", ns.name, check=False)
        self.inodes.clear()                       # inode numbers are reused once a namespace is gone
        shutil.rmtree(self.dir, ignore_errors=True)
        if os.path.exists(self.dir):
            self.problems.append(f"could not remove {self.dir}")
        self.remove_root_paths()

    def unmount(self) -> None:
        """Whatever podman left mounted under our temp dir (overlay, shm), deepest first."""
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
        for mp in sorted((p for p in points if p.startswith(self.dir + "/")), key=len, reverse=True):
            if _libc.umount2(mp.encode(), _MNT_DETACH) != 0:
                self.problems.append(f"umount {mp}: {os.strerror(ctypes.get_errno())}")

    def remove_root_paths(self) -> None:
        for cg in sorted(set(glob.glob("/sys/fs/cgroup/*/libpod_parent")) - self.before.cgroups):
            for dirpath, _, _ in sorted(os.walk(cg), key=lambda t: len(t[0]), reverse=True):
                try:
                    os.rmdir(dirpath)
                except OSError as exc:
                    self.problems.append(f"rmdir {dirpath}: {exc.strerror}")
        for path in sorted(ROOT_PATHS, key=len, reverse=True):      # deepest first: then its parent may go
            if self.before.paths.get(path) or not os.path.lexists(path):
                continue
            try:
                if path in SHARED_PARENTS:
                    os.rmdir(path)                  # only if empty: other CNI users may keep files there
                elif os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
            except OSError as exc:
                if path in SHARED_PARENTS and exc.errno == errno.ENOTEMPTY:
                    stale = [n for n in os.listdir(path) if n.startswith(("podman-", NETWORK))]
                    if stale:
                        self.problems.append(f"{path} holds podman entries: {stale[:5]}")
                else:
                    self.problems.append(f"could not remove {path}: {exc.strerror}")
        # Files podman put in shared dirs that existed before (the CNI result cache of our network).
        for path in glob.glob(f"/var/lib/cni/results/{NETWORK}-*") + glob.glob(f"/var/lib/cni/networks/{NETWORK}"):
            self.problems.append(f"left by podman: {path}")
            with contextlib.suppress(OSError):
                shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)


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
def adapt(written: dict[str, Any], variant: str, data_dir: str) -> dict[str, Any]:
    """The conflist the plugins get: podman's, with leases in ``data_dir`` and, for netkit, netkit's types."""
    conf = copy.deepcopy(written)
    if variant == "netkit":
        # netkit has no firewall or tuning plugin: those two entries go (the reference variant keeps them).
        conf["plugins"] = [p for p in conf["plugins"] if p["type"] not in NO_NETKIT_PLUGIN]
    for plugin in conf["plugins"]:
        if "ipam" in plugin:
            plugin["ipam"]["dataDir"] = data_dir
            if variant == "netkit":
                plugin["ipam"]["type"] = NETKIT_TYPES[plugin["ipam"]["type"]]
        if variant == "netkit":
            plugin["type"] = NETKIT_TYPES[plugin["type"]]
    return conf


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


@contextlib.contextmanager
def network(st: Store, variant: str) -> Iterator[Network]:
    """A sandbox host, a podman configuration for ``variant`` and its network, made by ``podman network create``.

    The netkit variant's podman finds only netkit's plugins (``cni_plugin_dirs``), the reference's only
    Debian's; leases go to a directory of the variant's own.
    """
    label = f"{variant}{next(_networks)}"          # one per test module that uses it
    base = os.path.join(st.dir, label)
    plugin_dirs = [st.bin_dir] if variant == "netkit" else [sb.REFERENCE_BIN]
    conf = st.write_conf(label, plugin_dirs)
    with sb.sandbox(st.bin_dir, os.path.join(base, "leases")) as box:
        st.add_namespace(box.host)
        inode = os.stat(box.host.path).st_ino
        pm = st.podman(conf, box.host)
        st.active.append(pm)
        try:
            pm("network", "create", "--disable-dns", "--subnet", SUBNET, "--gateway", GATEWAY, NETWORK)
            path = os.path.join(base, "net.d", f"{NETWORK}.conflist")
            with open(path) as f:
                written = json.load(f)
            conflist = adapt(written, variant, box.data_dir)
            with open(path, "w") as f:
                json.dump(conflist, f, indent=2)
            yield Network(variant, pm, box, written, conflist, path)
        finally:
            pm.rm_all()
            st.active.remove(pm)
            if not st.done:
                st.wait_processes()
    st.inodes.discard(inode)                  # the namespace is gone; its inode number may be reused
