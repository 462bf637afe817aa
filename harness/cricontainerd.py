"""containerd 1.6 with its CRI plugin on, in the suite's containerd sandbox (harness/containerd.py),
for tests/e2e/test_cri.py: the path kubelet drives a node's pods through.

Everything of harness/containerd.py holds (own mount namespace with the CNI paths, a sandbox host
network namespace, root/state/socket in the run's temp dir, teardown of what containerd leaves
outside it); here the CRI plugin is configured instead of disabled:

- its CNI bin and conf dirs are the run's, one config loaded (kubelet's containerd default);
- the pods' network namespaces are mounted under the state dir (``netns_mounts_under_state_dir``),
  not /run/netns, so nothing of them is made on the machine and the run's unmount finds them;
- a pause image built here from busybox-static (``sleep infinity``) and imported into containerd's
  ``k8s.io`` namespace, the CRI plugin's, as ``sandbox_image``: nothing can be pulled;
- go-cni adds a loopback network (plugin type ``loopback``) beside the main one: the plugins are
  installed with `netkit cni install --loopback` (``LOOPBACK``), as the DaemonSet does, so
  ``loopback`` in the bin dir is netkit-loopback and every plugin of a pod is netkit's;
- pods' cgroups go under ``cgroup_parent`` (the tests' pods' cgroup parent), one of this containerd's
  own (concurrent runs never share it), removed on teardown from every hierarchy it is in (cgroup v1
  has one per controller, v2 one).
"""

from __future__ import annotations

import os
import secrets

from harness import containerd as hc
from harness.podman import rootfs_tar

CRI_NAMESPACE = "k8s.io"                        # containerd's namespace of the CRI plugin's images and pods
PAUSE_IMAGE = "registry.k8s.io/pause:netkit-test"
PAUSE_ENTRYPOINT = ["/bin/sleep", "infinity"]   # StopPodSandbox SIGKILLs it: no signal handling needed
CGROUP_PARENT_PREFIX = "/netkit-cri-test-"      # the pods' cgroups' parent: this, and a containerd's own token


class CriContainerd(hc.Containerd):
    """A harness/containerd.py containerd with the CRI plugin serving on ``self.socket``."""

    DISABLED_PLUGINS = ()
    LOOPBACK = True

    def __init__(self, top: str, ns_path: str, bin_dir: str, conf_dir: str, **env: str) -> None:
        super().__init__(top, ns_path, bin_dir, conf_dir, **env)
        self.cgroup_parent = CGROUP_PARENT_PREFIX + secrets.token_hex(4)

    def plugins_config(self) -> str:
        """The CRI plugin's part of config.toml: the run's CNI dirs and pause image."""
        return f"""[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  # Pause gets oom_score_adj -998 otherwise, which this machine's root may not set (runc init fails):
  # capped at containerd's own.
  restrict_oom_score_adj = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{self.bin_dir}"
    conf_dir = "{self.conf_dir}"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
"""

    def import_images(self) -> None:
        """The pause image in the CRI plugin's namespace."""
        rootfs = rootfs_tar(os.path.join(self.top, "rootfs.tar"), {})
        archive = hc.oci_archive(os.path.join(self.top, "pause.tar"), rootfs, PAUSE_IMAGE, PAUSE_ENTRYPOINT)
        self.ctr("images", "import", archive, namespace=CRI_NAMESPACE)

    def teardown(self) -> list[str]:
        """As Containerd.teardown, and ``cgroup_parent`` gone from every cgroup hierarchy (runc removes
        each pod's own cgroup under it)."""
        problems = super().teardown()
        hc.remove_cgroups(self.cgroup_parent)
        return problems
