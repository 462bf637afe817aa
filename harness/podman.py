"""podman 4.3 in a sandbox of ours, for tests/e2e and bench/{podman_plugins,runtime_start}.py.

Nothing of the machine's podman setup is used or changed: podman reads only the files of one ``Store``
(``CONTAINERS_CONF``: runc, cgroupfs, file events and locks, ulimits within the hard limits, the CNI
backend with our plugin and config dirs; ``CONTAINERS_STORAGE_CONF``: overlay storage in the temp dir),
and its one image is imported from a tar of Debian's static busybox (no registry).  Every command runs
as ``nsenter --net=SANDBOX podman ...`` (not ``ip netns exec``, whose private mount namespace would hide
the netns bind mounts podman makes under /run/netns), so bridges, veths and firewall rules land in a
throwaway sandbox host namespace.  ``Store.teardown`` waits for podman's processes, unmounts and deletes
the temp dir, and what rootful podman writes outside it whatever its config (``ROOT_PATHS``, cgroups)
when that was not there before.  The sandbox namespaces are the caller's.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import glob
import io
import json
import os
import resource
import shlex
import shutil
import subprocess
import tarfile
from typing import Any

from harness import HarnessError, procs
from harness.bench import EXEC_TIMEOUT_S, tail

PACKAGES = ("podman", "runc", "busybox-static")
NSENTER = "/usr/bin/nsenter"
# podman and its children (conmon, runc, the CNI plugins, a container's python3) get this PATH and HOME,
# nothing else of ours: never a version manager's shim earlier in the caller's PATH.
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUSYBOX = "/bin/busybox"                      # busybox-static: runs in an image with nothing else
NPROC_CAP = 32768                             # podman 4.3 lowers its own RLIMIT_NPROC to this
ROOT_PATHS = (                                # what rootful podman writes outside our temp dir, whatever its config
    "/var/lib/containers", "/var/lib/containers/cache", "/var/lib/containers/cache/blob-info-cache-v1.boltdb",
    "/var/lib/cni", "/var/lib/cni/networks", "/var/lib/cni/networks/podman", "/var/lib/cni/results",
    "/run/runc", "/run/containers", "/run/libpod", "/dev/shm/libpod_lock",
)
SHARED_PARENTS = {"/var/lib/cni", "/var/lib/cni/networks", "/var/lib/cni/results", "/run/runc"}  # rmdir if empty only
CGROUPS = "/sys/fs/cgroup/*/libpod_parent"

VARIANTS = ("netkit", "reference")
# `podman network create` plugin type -> netkit's drop-in.
NETKIT_TYPES = {"bridge": "netkit-bridge", "host-local": "netkit-ipam", "portmap": "netkit-portmap",
                "dnsname": "netkit-dns"}
# netkit has no firewall or tuning plugin: the netkit variant drops these entries (netkit-bridge writes
# its own forward rules, and podman's tuning entry sets nothing); the reference variant keeps them.
NO_NETKIT_PLUGIN = ("firewall", "tuning")
SUBNET, GATEWAY = "10.89.0.0/24", "10.89.0.1"


def clean_env(**extra: str) -> dict[str, str]:
    """CLEAN_PATH and our HOME, plus ``extra``: the whole environment of a command we measure or drive."""
    return {"PATH": CLEAN_PATH, "HOME": os.environ.get("HOME", "/root"), **extra}


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


def install_packages() -> None:
    """apt-get install what ``missing_packages`` names (once more after an apt-get update if that fails)."""
    missing = missing_packages()
    if not missing:
        return
    argv = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES, "util-linux"]
    print(f"podman setup: missing {', '.join(missing)}: {shlex.join(argv)}", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env)
    if proc.returncode != 0:
        print("apt-get install failed; apt-get update, then once more", flush=True)
        subprocess.run(["apt-get", "update"], capture_output=True, timeout=900, env=env)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env)
    missing = missing_packages()
    if proc.returncode != 0 or missing:
        raise HarnessError(f"apt-get install {' '.join(PACKAGES)} failed (still missing: {', '.join(missing)}): "
                           f"{tail(proc.stderr)}")


def ulimits() -> dict[str, str]:
    """The container ulimits runc may set: a container's limits may not exceed the hard limits of the
    runc that sets them (root here lacks CAP_SYS_RESOURCE): ours for nofile; for nproc no higher than
    podman lowers its own to (podman 4.3, measured: 32769 fails with "error setting rlimit type 6")."""
    nofile, nproc = (resource.getrlimit(r)[1] for r in (resource.RLIMIT_NOFILE, resource.RLIMIT_NPROC))
    nproc = NPROC_CAP if nproc == resource.RLIM_INFINITY else min(nproc, NPROC_CAP)
    return {"nofile": "-1" if nofile == resource.RLIM_INFINITY else str(nofile), "nproc": str(nproc)}


def rootfs_tar(path: str, files: dict[str, bytes]) -> str:
    """A tar at ``path``: bin/busybox (static) with a link per applet, passwd, group and ``files``."""
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    files = {"etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n", "etc/group": b"root:x:0:\n", **files}
    dirs = {"bin", "etc", "proc", "sys", "dev", "tmp", "root"} | {os.path.dirname(n) for n in files} - {""}
    with tarfile.open(path, "w") as tar:
        for name in sorted(dirs):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(ti)
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in applets:
            if applet != "busybox":
                ti = tarfile.TarInfo(f"bin/{applet}")
                ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, "busybox", 0o777
                tar.addfile(ti)
        for name, body in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(body), 0o644
            tar.addfile(ti, io.BytesIO(body))
    return path


def adapt(written: dict[str, Any], variant: str, data_dir: str) -> dict[str, Any]:
    """The conflist the plugins get: podman's, with leases in ``data_dir`` and, for netkit, netkit's types."""
    conf = copy.deepcopy(written)
    if variant == "netkit":
        conf["plugins"] = [p for p in conf["plugins"] if p["type"] not in NO_NETKIT_PLUGIN]
    for plugin in conf["plugins"]:
        if "ipam" in plugin:
            plugin["ipam"]["dataDir"] = data_dir
            if variant == "netkit":
                plugin["ipam"]["type"] = NETKIT_TYPES[plugin["ipam"]["type"]]
        if variant == "netkit":
            plugin["type"] = NETKIT_TYPES[plugin["type"]]
    return conf


class Store:
    """One run's podman: a temp dir with storage, run and tmp dirs, the configs and the image.

    ``inodes`` holds the sandbox namespaces podman runs in (their processes are the run's);
    ``problems``, ``notes`` and ``removed`` collect what the clean-up found, kept and removed.
    """

    def __init__(self, top: str, image: str) -> None:
        self.dir, self.image = top, image
        self.storage_conf = os.path.join(top, "storage.conf")
        self.inodes: set[int] = set()
        self.networks: list[str] = []               # network names whose CNI cache podman may leave
        self.net_dirs: dict[str, str] = {}          # containers.conf -> its network_config_dir
        self.paths_before: dict[str, bool] | None = None
        self.cgroups_before: set[str] = set()
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.removed: list[str] = []
        self.done = False

    def setup(self) -> None:
        """What podman may add outside the temp dir, as it is now; the storage dirs and storage.conf."""
        self.paths_before = {p: os.path.lexists(p) for p in ROOT_PATHS}
        self.cgroups_before = set(glob.glob(CGROUPS))
        for sub in ("graph", "run", "tmp"):
            os.makedirs(os.path.join(self.dir, sub))
        with open(self.storage_conf, "w") as f:
            f.write(f'[storage]\ndriver = "overlay"\ngraphroot = "{self.dir}/graph"\nrunroot = "{self.dir}/run"\n')

    def write_conf(self, name: str, plugin_dirs: list[str], engine: str = "", net_dir: str = "") -> str:
        """``NAME/containers.conf`` with network configs in ``net_dir`` (default ``NAME/net.d``): every
        configuration shares storage, tmp dir and locks, not its network dir; ``engine``: lines for [engine]."""
        net_dir = net_dir or os.path.join(self.dir, name, "net.d")
        os.makedirs(net_dir, exist_ok=True)
        os.makedirs(os.path.join(self.dir, name), exist_ok=True)
        lim = ulimits()
        path = os.path.join(self.dir, name, "containers.conf")
        with open(path, "w") as f:
            f.write(f"""# Written by harness/podman.py for one run; removed with it.
[containers]
default_ulimits = ["nofile={lim['nofile']}:{lim['nofile']}", "nproc={lim['nproc']}:{lim['nproc']}"]

[network]
network_backend = "cni"
cni_plugin_dirs = [{", ".join(json.dumps(d) for d in plugin_dirs)}]
network_config_dir = "{net_dir}"

[engine]
{engine}runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{self.dir}/tmp"
image_copy_tmp_dir = "{self.dir}/tmp"
lock_type = "file"
""")
        self.net_dirs[path] = net_dir
        return path

    def processes(self) -> dict[int, str]:
        """Processes of this store: the temp dir in their command line, cwd or root, or in its sandboxes."""
        return procs.processes_of_run(self.dir, self.inodes)

    def teardown(self, wait_s: float = 60) -> None:
        """Once, after the containers are removed: wait for podman's processes (kill what stays), unmount
        and delete the temp dir, remove what podman made outside it.  Then podman is never called again:
        it would make a fresh store at the same paths."""
        if self.done:
            return
        self.done = True
        self.problems += procs.reap(self.processes, wait_s)
        self.problems += procs.unmount_under(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)
        if os.path.exists(self.dir):
            self.problems.append(f"could not remove {self.dir}")
        if self.paths_before is not None:
            self.remove_root_paths(self.paths_before)

    def remove_root_paths(self, before: dict[str, bool]) -> None:
        """What podman made outside the temp dir and was not there ``before``: cgroups, ROOT_PATHS
        (shared parents only if empty), our networks' CNI cache files."""
        for cg in sorted(set(glob.glob(CGROUPS)) - self.cgroups_before):
            for dirpath, _, _ in sorted(os.walk(cg), key=lambda t: len(t[0]), reverse=True):
                try:
                    os.rmdir(dirpath)
                except OSError as exc:
                    self.problems.append(f"rmdir {dirpath}: {exc.strerror}")
            if not os.path.exists(cg):
                self.removed.append(cg)
        for path in sorted(ROOT_PATHS, key=len, reverse=True):      # deepest first: then its parent may go
            if before.get(path) or not os.path.lexists(path):
                continue
            try:
                if path in SHARED_PARENTS:
                    os.rmdir(path)                  # only if empty: other CNI users may keep files there
                elif os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
                self.removed.append(path)
            except OSError as exc:
                if path in SHARED_PARENTS and exc.errno == errno.ENOTEMPTY:
                    stale = [n for n in os.listdir(path) if n.startswith(("podman-", *self.networks))]
                    if stale:
                        self.problems.append(f"{path} holds podman entries: {stale[:5]}")
                    else:
                        self.notes.append(f"{path} was created during this run but holds others' files: kept")
                else:
                    self.problems.append(f"could not remove {path}: {exc.strerror}")
        # Files podman put in shared dirs that existed before (the CNI result cache of our networks).
        for net in self.networks:
            for path in glob.glob(f"/var/lib/cni/results/{net}-*") + glob.glob(f"/var/lib/cni/networks/{net}"):
                self.problems.append(f"left by podman: {path}")
                with contextlib.suppress(OSError):
                    shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)


class Podman:
    """``podman`` with one containers.conf of a Store, run inside one sandbox namespace (its path)."""

    def __init__(self, store: Store, conf: str, ns_path: str, **env: str) -> None:
        self.store, self.conf, self.ns_path, self.extra_env = store, conf, ns_path, env

    @property
    def env(self) -> dict[str, str]:
        """podman's whole environment: clean_env, our two config files and the extra variables."""
        return clean_env(CONTAINERS_CONF=self.conf, CONTAINERS_STORAGE_CONF=self.store.storage_conf,
                         **self.extra_env)

    def argv(self, *args: str) -> list[str]:
        """``podman ARGS`` inside the sandbox namespace."""
        return [NSENTER, f"--net={self.ns_path}", "podman", *args]

    def show(self, *args: str) -> str:
        """The command as a shell line, to reproduce it by hand."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items() if k not in ("PATH", "HOME"))
        return f"{env} {shlex.join(self.argv(*args))}"

    def __call__(self, *args: str, check: bool = True,
                 timeout: float = EXEC_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        """Run ``podman ARGS`` (its output captured); HarnessError if it fails and ``check``."""
        # nsenter refuses a namespace that is gone: podman never runs in the machine's own.
        assert not self.store.done, "podman called after the store's clean-up"
        proc = subprocess.run(self.argv(*args), env=self.env, cwd=self.store.dir, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, start_new_session=True)
        if check and proc.returncode != 0:
            raise HarnessError(f"{self.show(*args)} failed (exit {proc.returncode}): "
                               f"{tail(proc.stderr or proc.stdout)}")
        return proc

    def import_image(self, files: dict[str, bytes]) -> str:
        """The store's image from a busybox rootfs with ``files``; the command, as ``show`` gives it."""
        args = ("import", rootfs_tar(os.path.join(self.store.dir, "rootfs.tar"), files), self.store.image)
        self(*args)
        return self.show(*args)

    def versions(self) -> dict[str, str]:
        """podman's and runc's versions, for a report."""
        runc = subprocess.run(["runc", "--version"], capture_output=True, text=True).stdout.splitlines() or ["?"]
        return {"podman": self("version", "--format", "{{.Client.Version}}", check=False).stdout.strip() or "?",
                "runc": runc[0]}

    def remove_all(self, *filters: str) -> list[str]:
        """Remove every container (``filters``: ``network=NAME``...); the IDs that were there.

        A container namespace (/run/netns/netns-<uuid>) podman failed to remove with its container is
        removed here and reported: nothing else would ever remove it.
        """
        flags = [a for f in filters for a in ("--filter", f)]
        ids = self("ps", "-aq", "--no-trunc", *flags, check=False).stdout.split()
        if not ids:
            return []
        keys = self("inspect", "--format", "{{.NetworkSettings.SandboxKey}}", *ids, check=False).stdout.split()
        if self("rm", "-f", "-t", "0", *ids, check=False).returncode != 0:
            self("rm", "-f", "-t", "0", "--depend", *ids, check=False)
        for key in sorted(set(keys)):
            if key.startswith("/run/netns/netns-") and os.path.lexists(key):
                proc = subprocess.run(["ip", "netns", "del", os.path.basename(key)], capture_output=True)
                self.store.problems.append(f"podman left the container namespace {key} "
                                           f"(ip netns del: exit {proc.returncode})")
        return ids

    def create_network(self, name: str, variant: str,
                       data_dir: str) -> tuple[dict[str, Any], dict[str, Any], str]:
        """``podman network create`` NAME on SUBNET, its conflist adapted for ``variant`` (``adapt``):
        (what podman wrote, what the plugins get, the conflist's path)."""
        self("network", "create", "--disable-dns", "--subnet", SUBNET, "--gateway", GATEWAY, name)
        if name not in self.store.networks:
            self.store.networks.append(name)
        path = os.path.join(self.store.net_dirs[self.conf], f"{name}.conflist")
        with open(path) as f:
            written = json.load(f)
        conflist = adapt(written, variant, data_dir)
        with open(path, "w") as f:
            json.dump(conflist, f, indent=2)
        return written, conflist, path
