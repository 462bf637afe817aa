"""containerd 1.6 and `ctr run --cni` in a sandbox of ours, for tests/e2e/test_containerd.py.

`ctr run --cni` runs the CNI plugins itself (go-cni, libcni's exec) with paths it does not let anyone
change: the first config in /etc/cni/net.d, plugins in /opt/cni/bin, the result cache in /var/lib/cni.
So containerd and ctr run in a mount namespace of their own (``unshare --mount --propagation
private``, held by a ``sleep`` process) where the run's temp dirs are mounted over those three paths,
and in a throwaway sandbox host network namespace (``nsenter --net``): nothing of the machine's CNI
setup is read or changed.  containerd's root, state, socket and the ``opt`` plugin's dir are the
temp dir's (``config.toml``); the CRI plugin is disabled.  Its image is Debian's static busybox as an
OCI archive built here (nothing is pulled).

What containerd 1.6 writes outside its configured dirs whatever its config: the shims' sockets and
runc's state under /run/containerd go to a tmpfs of the run's mount namespace (gone with it; the
mount point, made when the machine has none, is removed by the last run using it), the containers'
cgroups, under a parent of the run's own (its containerd namespace's), are removed with it on teardown.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import io
import ipaddress
import json
import os
import shutil
import secrets
import signal
import subprocess
import tarfile
import time
from typing import Any, Callable, Iterator

from harness import HarnessError, procs
from harness.bench import EXEC_TIMEOUT_S, tail
from harness.podman import BUSYBOX, CLEAN_PATH, NSENTER, rootfs_tar
from netkit.launch import install

PACKAGES = ("containerd", "runc", "busybox-static")
# containerd's own namespace (not a network namespace), one per run: ctr's default cgroup parent is
# /<namespace>, so runs side by side each have (and remove) their own.
NAMESPACE_PREFIX = "netkit-test-"
IMAGE = "docker.io/netkit/busybox:test"
# containerd 1.6 puts the shims' sockets and runc's state under /run/containerd whatever its config.
RUN_STATE = "/run/containerd"
MADE_MARK = "trusted.netkit-test-made"   # an xattr on RUN_STATE when a run made it (not the machine's)
START_WAIT_S = 60                             # only stops a hang: containerd is ready when its socket accepts


def cgroup_dirs(parent: str) -> list[str]:
    """The directories of cgroup ``parent`` (like "/name") in every hierarchy: one under cgroup v2,
    one per controller under v1 (or a hybrid layout)."""
    return sorted(glob.glob(f"/sys/fs/cgroup{parent}") + glob.glob(f"/sys/fs/cgroup/*{parent}"))


def remove_cgroups(parent: str) -> None:
    """Remove a run's own cgroup ``parent`` and the (empty) cgroups under it, in every hierarchy; an
    rmdir only ever removes an empty cgroup."""
    for top in cgroup_dirs(parent):
        for cg in sorted(glob.glob(f"{top}/*/"), reverse=True) + [top]:
            with contextlib.suppress(FileNotFoundError, OSError):
                os.rmdir(cg)


@contextlib.contextmanager
def _run_state_lock() -> Iterator[None]:
    """Excludes other runs between making RUN_STATE and mounting on it, and between finding it
    unused and removing it (an rmdir would detach a mount on it in another run's namespace).  The
    lock is on /run itself: it always exists, and no lock file is left behind."""
    fd = os.open(os.path.dirname(RUN_STATE), os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _mounted_elsewhere(path: str, own_ns: str) -> bool:
    """True when a mount namespace other than ``own_ns`` (a /proc/PID/ns/mnt link's text) has a mount
    on ``path``: another run's tmpfs.  A process left in ``own_ns`` (the agent a plugin started
    there, stopped after the teardown) does not count."""
    for proc in glob.glob("/proc/[0-9]*"):
        with contextlib.suppress(OSError):
            if os.readlink(f"{proc}/ns/mnt") == own_ns:
                continue
            with open(f"{proc}/mountinfo") as f:
                if any(line.split(" ", 5)[4] == path for line in f):
                    return True
    return False


def _made_by_a_run(path: str) -> bool:
    try:
        return os.getxattr(path, MADE_MARK) == b"1"
    except OSError:
        return False


def prepare(tmp: str, subnet: ipaddress.IPv4Network, subnet6: ipaddress.IPv6Network | None = None,
            edit: Callable[[dict[str, Any]], None] | None = None,
            loopback: bool = False) -> tuple[str, str, str, str]:
    """A run's dirs under ``tmp``: (containerd's top, CNI bin, conf and IPAM data dirs), the plugins
    installed by `netkit cni install` (``loopback``: with --loopback) and its default conflist for
    ``subnet`` (dual-stack with ``subnet6``, as a Kubernetes node with two podCIDRs) with leases in
    the data dir, changed by ``edit`` if given."""
    top = os.path.join(tmp, "containerd")
    bin_dir, conf_dir, data_dir = (os.path.join(tmp, d) for d in ("bin", "net.d", "leases"))
    os.makedirs(top)
    report = install.install(bin_dir=bin_dir, conf_dir=conf_dir, loopback=loopback)
    conflist = install.default_conflist(subnet)
    ipam = conflist["plugins"][0]["ipam"]  # type: ignore[index]
    ipam["dataDir"] = data_dir
    if subnet6 is not None:
        ipam["ranges"].append([{"subnet": str(subnet6)}])
        ipam["routes"].append({"dst": "::/0"})
    if edit is not None:
        edit(conflist)
    with open(report.conflist, "w") as f:
        json.dump(conflist, f)
    return top, bin_dir, conf_dir, data_dir


def unmet() -> str:
    """Why the containerd tests cannot run here ("" when they can): not root, or packages missing."""
    if os.geteuid() != 0:
        return "the containerd end-to-end tests need root"
    missing = missing_packages()
    if missing:
        return (f"needs {', '.join(missing)}: apt-get install --no-install-recommends "
                f"{' '.join(PACKAGES)} (or ./setup.sh deps)")
    return ""


def missing_packages() -> list[str]:
    """What of containerd, ctr, runc and busybox-static is not installed."""
    missing = [p for p in ("containerd", "ctr", "runc") if shutil.which(p, path=CLEAN_PATH) is None]
    if not os.path.exists(BUSYBOX):
        missing.append("busybox-static")
    return missing


def _blob(layout: dict[str, bytes], data: bytes) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    layout[f"blobs/sha256/{digest[7:]}"] = data
    return {"digest": digest, "size": len(data)}


def oci_archive(path: str, rootfs: str, name: str = IMAGE, entrypoint: list[str] | None = None) -> str:
    """An OCI image layout tar at ``path`` with one layer, the rootfs tar ``rootfs``, named ``name``;
    ``entrypoint``: the image's, if any (the CRI pause image's is what holds the pod's sandbox)."""
    layout: dict[str, bytes] = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode()}
    with open(rootfs, "rb") as f:
        layer = f.read()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Env": [f"PATH={CLEAN_PATH}"], "Cmd": ["sh"],
                         **({"Entrypoint": entrypoint, "Cmd": []} if entrypoint else {})},
              "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   **_blob(layout, json.dumps(config).encode())},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **_blob(layout, layer)}],
    }
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **_blob(layout, json.dumps(manifest).encode()),
        "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "test"}}]}
    layout["index.json"] = json.dumps(index).encode()
    with tarfile.open(path, "w") as tar:
        for name, body in layout.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(body), 0o644
            tar.addfile(info, io.BytesIO(body))
    return path


class Containerd:
    """One containerd of a run: its temp dir ``top``, run inside sandbox network namespace ``ns_path``.

    ``bin_dir`` and ``conf_dir`` appear to containerd and ctr as /opt/cni/bin and /etc/cni/net.d;
    ``env``: what ctr (and so every plugin it execs) gets besides PATH and HOME.
    """

    def __init__(self, top: str, ns_path: str, bin_dir: str, conf_dir: str, **env: str) -> None:
        self.top, self.ns_path, self.bin_dir, self.conf_dir, self.env = top, ns_path, bin_dir, conf_dir, env
        self.socket = os.path.join(top, "containerd.sock")
        self.log = os.path.join(top, "containerd.log")
        self.holder: subprocess.Popen[bytes] | None = None
        self.daemon: subprocess.Popen[bytes] | None = None
        self.made_run_state = False
        self.mnt_ns = ""   # the run's mount namespace, as /proc/PID/ns/mnt reads
        self.namespace = NAMESPACE_PREFIX + secrets.token_hex(4)
        self.ctr_cgroup = f"/{self.namespace}"  # ctr's default cgroup parent: /<namespace>/<container id>
        self.problems: list[str] = []

    def _in_ns(self, *argv: str) -> list[str]:
        assert self.holder is not None
        return [NSENTER, f"--mount=/proc/{self.holder.pid}/ns/mnt", f"--net={self.ns_path}", *argv]

    def _run(self, *argv: str, check: bool = True, timeout: float = EXEC_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        env = {"PATH": CLEAN_PATH, "HOME": os.environ.get("HOME", "/root"), **self.env}
        proc = subprocess.run(self._in_ns(*argv), env=env, cwd=self.top, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, start_new_session=True)
        if check and proc.returncode != 0:
            raise HarnessError(f"{' '.join(argv)} failed (exit {proc.returncode}): {tail(proc.stderr or proc.stdout)}")
        return proc

    def start(self) -> None:
        """The private mount namespace with the CNI paths, containerd in it, the image imported."""
        self.holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "infinity"],
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        mnt = f"/proc/{self.holder.pid}/ns/mnt"
        for _ in range(500):  # until unshare has exec'd sleep in the new mount namespace
            if os.readlink(mnt) != os.readlink("/proc/self/ns/mnt"):
                break
            time.sleep(0.01)
        self.mnt_ns = os.readlink(mnt)
        cache = os.path.join(self.top, "cni-cache")
        os.makedirs(cache, exist_ok=True)
        # /opt and /var/lib get an empty tmpfs of this namespace (nothing there is containerd's, whose
        # dirs are the temp dir's): the mount points /opt/cni/bin and /var/lib/cni can then be made
        # without making them on the machine.
        for point in ("/opt", "/var/lib"):
            self._run("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", point)
        # /run/containerd: its mount point is on the machine's /run (a tmpfs over all of /run would
        # hide what the plugins share with the machine there); made if missing, and marked so.
        with _run_state_lock():
            try:
                os.mkdir(RUN_STATE, 0o711)
                self.made_run_state = True
                with contextlib.suppress(OSError):
                    os.setxattr(RUN_STATE, MADE_MARK, b"1")
            except FileExistsError:
                pass
            self._run("mount", "-t", "tmpfs", "-o", "mode=0711", "tmpfs", RUN_STATE)
        self._run("mkdir", "-p", "/opt/cni/bin", "/var/lib/cni")
        for src, point in ((self.bin_dir, "/opt/cni/bin"), (self.conf_dir, "/etc/cni/net.d"), (cache, "/var/lib/cni")):
            self._run("mount", "--bind", src, point)
        config = os.path.join(self.top, "config.toml")
        with open(config, "w") as f:
            f.write(self.config_text())
        with open(self.log, "wb") as log:
            # The plugins' environment too where containerd itself runs them (the CRI plugin).
            self.daemon = subprocess.Popen(self._in_ns("containerd", "--config", config), stdin=subprocess.DEVNULL,
                                           stdout=log, stderr=log, cwd=self.top, start_new_session=True,
                                           env={"PATH": CLEAN_PATH, "HOME": os.environ.get("HOME", "/root"),
                                                **self.env})
        deadline = time.monotonic() + START_WAIT_S
        while self.ctr("version", check=False).returncode != 0:
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                raise HarnessError(f"containerd did not start: {tail(open(self.log).read())}")
            time.sleep(0.1)
        self.import_images()

    # Whether the run's plugins need `loopback` (`netkit cni install --loopback`): the CRI plugin's do.
    LOOPBACK = False

    # What this containerd runs without: the CRI plugin (harness/cricontainerd.py turns it on).
    DISABLED_PLUGINS: tuple[str, ...] = ("io.containerd.grpc.v1.cri",)

    def config_text(self) -> str:
        """containerd's config.toml for this run: its dirs the temp dir's, plugins_config() appended."""
        return f"""# Written by harness/containerd.py for one run; removed with it.
version = 2
root = "{self.top}/root"
state = "{self.top}/state"
disabled_plugins = {json.dumps(list(self.DISABLED_PLUGINS))}
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{self.top}/opt"
""" + self.plugins_config()

    def plugins_config(self) -> str:
        """More of config.toml: none here."""
        return ""

    def import_images(self) -> None:
        """The busybox image IMAGE, built here, in this run's containerd namespace."""
        archive = oci_archive(os.path.join(self.top, "image.tar"),
                              rootfs_tar(os.path.join(self.top, "rootfs.tar"), {}))
        self.ctr("images", "import", archive)

    def ctr(self, *args: str, check: bool = True, timeout: float = EXEC_TIMEOUT_S,
            namespace: str = "") -> subprocess.CompletedProcess[str]:
        """``ctr ARGS`` against this containerd, in its namespaces (``namespace``: containerd's own,
        this run's by default)."""
        return self._run("ctr", "--address", self.socket, "--namespace", namespace or self.namespace, *args,
                         check=check, timeout=timeout)

    def processes(self) -> dict[int, str]:
        """The run's processes: the temp dir in their command line, cwd or root (shims, containers)."""
        return procs.processes_of_run(self.top, set())

    def _remove_run_state(self) -> None:
        """RUN_STATE's mount point, when a run made it and no run mounts on it any more (the last
        one out removes it; the machine's own is never touched)."""
        with _run_state_lock():
            if (self.made_run_state or _made_by_a_run(RUN_STATE)) and not _mounted_elsewhere(RUN_STATE, self.mnt_ns):
                with contextlib.suppress(OSError):  # not empty: a containerd of the machine's now uses it
                    os.rmdir(RUN_STATE)

    def teardown(self) -> list[str]:
        """Stop containerd and the namespace holder, reap the rest, remove what containerd made outside
        the temp dir; the problems found."""
        for proc in (self.daemon, self.holder):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    self.problems.append(f"{proc.args[0]} ignored SIGTERM: killed")
        self.problems += procs.reap(self.processes, 30)
        self.problems += procs.unmount_under(self.top)
        remove_cgroups(self.ctr_cgroup)
        self._remove_run_state()
        shutil.rmtree(self.top, ignore_errors=True)
        return self.problems
