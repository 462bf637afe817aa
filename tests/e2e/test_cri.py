"""containerd 1.6's CRI plugin drives netkit's plugins as kubelet makes it: RunPodSandbox (CNI ADD of
go-cni's loopback network and netkit's, in parallel), PodSandboxStatus (the pod IP taken from eth0),
StopPodSandbox (CNI DEL), RemovePodSandbox.

containerd runs in the suite's containerd sandbox with the CRI plugin on (harness/cricontainerd.py):
its own mount namespace, root, state, socket and CNI dirs, in a throwaway sandbox host network
namespace; the test speaks CRI v1 over gRPC with harness/cri.py.  The plugins are the launchers
`netkit cni install` writes and the default conflist, on the test's agent socket, which the first
plugin exec starts and the fixture stops.
"""

from __future__ import annotations

import ipaddress
import json
import os
import uuid
from typing import Iterator

import pytest

from harness import containerd as hc
from harness import cri
from harness import cricontainerd as hcc
from harness.agent import stop_started
from netkit.launch import install
from tests import sandbox as sb

SUBNET = ipaddress.ip_network("10.78.0.0/24")


@pytest.fixture
def node(tmp_path: os.PathLike[str]) -> Iterator[tuple[cri.RuntimeClient, hcc.CriContainerd, sb.Sandbox]]:
    if os.geteuid() != 0:
        pytest.fail("the CRI end-to-end test needs root")
    missing = hc.missing_packages()
    if missing:
        pytest.fail(f"needs {', '.join(missing)}: apt-get install --no-install-recommends "
                    f"{' '.join(hc.PACKAGES)} (or ./setup.sh deps)", pytrace=False)
    top = os.path.join(str(tmp_path), "containerd")
    bin_dir, conf_dir, data_dir = (os.path.join(str(tmp_path), d) for d in ("bin", "net.d", "leases"))
    os.makedirs(top)
    report = install.install(bin_dir=bin_dir, conf_dir=conf_dir)
    conflist = install.default_conflist(SUBNET)
    conflist["plugins"][0]["ipam"]["dataDir"] = data_dir  # type: ignore[index]
    with open(report.conflist, "w") as f:
        json.dump(conflist, f)
    agent_socket = os.path.join(str(tmp_path), "agent.sock")
    with sb.sandbox(bin_dir, data_dir) as box:
        daemon = hcc.CriContainerd(top, box.host.path, bin_dir, conf_dir, NETKIT_AGENT_SOCKET=agent_socket)
        client = None
        try:
            daemon.start()
            client = cri.RuntimeClient(daemon.socket)
            yield client, daemon, box
        finally:
            if client is not None:
                for sandbox_id in _leftover(client):
                    client.remove_pod_sandbox(sandbox_id)
                client.close()
            problems = daemon.teardown()
            stop_started(agent_socket)
        assert not problems, problems


def _leftover(client: cri.RuntimeClient) -> list[str]:
    try:
        return client.list_pod_sandbox()
    except Exception:  # containerd already gone: its teardown reaps what is left
        return []


def pod(name: str, **kw: object) -> cri.PodSandboxConfig:
    """A pod's sandbox config as kubelet sends it (metadata, hostname, the test's cgroup parent)."""
    return cri.PodSandboxConfig(name=name, uid=str(uuid.uuid4()), namespace="default", hostname=name,
                                cgroup_parent=hcc.CGROUP_PARENT, **kw)  # type: ignore[arg-type]


def test_run_status_stop_remove_a_pod_sandbox(node: tuple[cri.RuntimeClient, hcc.CriContainerd, sb.Sandbox]) -> None:
    client, daemon, box = node
    assert client.version()[0] == "containerd"
    sandbox_id = client.run_pod_sandbox(pod("web"))
    status = client.pod_sandbox_status(sandbox_id)
    assert status.ready and status.name == "web"
    assert ipaddress.ip_address(status.ip) in SUBNET
    assert box.leases(install.DEFAULT_NETWORK) == [status.ip]
    client.stop_pod_sandbox(sandbox_id)
    assert not client.pod_sandbox_status(sandbox_id).ready
    client.remove_pod_sandbox(sandbox_id)
    assert client.list_pod_sandbox() == []
    veths = box.host.run("ip", "-o", "link", "show", "type", "veth").stdout
    assert veths.strip() == "", veths
    assert box.leases(install.DEFAULT_NETWORK) == []
    assert os.listdir(os.path.join(daemon.top, "cni-cache", "results")) == []
