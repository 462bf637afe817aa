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
import os
import select
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import pytest

from harness import cnirecord, cri
from harness import cricontainerd as hcc
from netkit.firewall.model import PortMapping, parse_port_mappings
from netkit.launch import install
from netkit.node import conflist as nodeconf
from tests import sandbox as sb
from tests.e2e.containerd import running

SUBNET = ipaddress.ip_network("10.78.0.0/24")
SUBNET6 = ipaddress.ip_network("fd78::/64")
PATIENCE = 30.0   # how long a server may take to say it listens before the test gives up (not a figure)


def node_shape(conflist: dict[str, Any]) -> None:
    """The conflist as `netkit node` writes it for a dual-stack node (netkit.node.conflist.build), with
    the run's lease directory kept."""
    built = nodeconf.build((SUBNET, SUBNET6), conflist["plugins"][0]["ipam"]["dataDir"])
    conflist.clear()
    conflist.update(built)


def declare_dns_and_annotations(conflist: dict[str, Any]) -> None:
    """The bridge also declares the ``dns`` and ``io.kubernetes.cri.pod-annotations`` capabilities."""
    conflist["plugins"][0]["capabilities"].update({"dns": True, "io.kubernetes.cri.pod-annotations": True})


EDITS = {"node-shape": node_shape, "declaring": declare_dns_and_annotations}


@pytest.fixture(params=["ipv4"])
def node(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]
         ) -> Iterator[tuple[cri.RuntimeClient, hcc.CriContainerd, sb.Sandbox]]:
    """A CRI containerd with netkit's default network; ``dual-stack`` (indirect): also SUBNET6;
    ``node-shape``: dual-stack in `netkit node`'s conflist shape; ``declaring``: IPv4, the conflist
    also declaring the dns and pod-annotations capabilities."""
    subnet6 = SUBNET6 if request.param in ("dual-stack", "node-shape") else None
    edit = EDITS.get(request.param)
    with running(str(tmp_path), SUBNET, hcc.CriContainerd, subnet6, edit) as (daemon, box):
        client = cri.RuntimeClient(daemon.socket)
        try:
            yield client, daemon, box
        finally:
            for sandbox_id in _leftover(client):  # a failed test's pods, before containerd goes
                client.remove_pod_sandbox(sandbox_id)
            client.close()


def _leftover(client: cri.RuntimeClient) -> list[str]:
    try:
        return client.list_pod_sandbox()
    except Exception:  # containerd already gone: its teardown reaps what is left
        return []


def pod(daemon: hcc.CriContainerd, name: str, **kw: object) -> cri.PodSandboxConfig:
    """A pod's sandbox config as kubelet sends it (metadata, hostname, the containerd's cgroup parent)."""
    return cri.PodSandboxConfig(name=name, uid=str(uuid.uuid4()), namespace="default", hostname=name,
                                cgroup_parent=daemon.cgroup_parent, **kw)  # type: ignore[arg-type]


def test_run_status_stop_remove_a_pod_sandbox(node: tuple[cri.RuntimeClient, hcc.CriContainerd, sb.Sandbox]) -> None:
    client, daemon, box = node
    assert client.version()[0] == "containerd"
    sandbox_id = client.run_pod_sandbox(pod(daemon, "web"))
    status = client.pod_sandbox_status(sandbox_id)
    assert status.ready and status.name == "web"
    assert ipaddress.ip_address(status.ip) in SUBNET
    assert box.leases(install.DEFAULT_NETWORK) == [status.ip]
    client.stop_pod_sandbox(sandbox_id)
    assert not client.pod_sandbox_status(sandbox_id).ready
    _network_gone(daemon, box)   # at Stop: kubelet may keep a stopped sandbox for long before Remove
    client.remove_pod_sandbox(sandbox_id)
    _gone(client, daemon, box)


@pytest.mark.parametrize("node", ["dual-stack", "node-shape"], indirect=True)
def test_a_dual_stack_pod_gets_both_families(node: tuple[cri.RuntimeClient, hcc.CriContainerd, sb.Sandbox]) -> None:
    # A node with two podCIDRs: containerd reports eth0's IPv4 address as the pod IP and the IPv6
    # one in additional_ips, as kubelet puts them in status.podIPs.  In netkit node's shape the
    # chain ends in netkit-loopback, whose result must be the bridge's (containerd reads eth0 there).
    client, daemon, box = node
    sandbox_id = client.run_pod_sandbox(pod(daemon, "dual"))
    status = client.pod_sandbox_status(sandbox_id)
    assert ipaddress.ip_address(status.ip) in SUBNET
    assert [ipaddress.ip_address(a) in SUBNET6 for a in status.additional_ips] == [True], status
    assert sorted(box.leases(install.DEFAULT_NETWORK)) == sorted([status.ip, *status.additional_ips])
    client.remove_pod_sandbox(sandbox_id)
    _gone(client, daemon, box)


def _gone(client: cri.RuntimeClient, daemon: hcc.CriContainerd, box: sb.Sandbox) -> None:
    """Nothing of any pod is left: no sandbox, and its network gone (_network_gone)."""
    assert client.list_pod_sandbox() == []
    _network_gone(daemon, box)


def _network_gone(daemon: hcc.CriContainerd, box: sb.Sandbox) -> None:
    """No pod has a veth, lease, cached result or published port's rule left."""
    links = box.host.run("ip", "-o", "link", "show", "type", "veth").stdout.splitlines()
    veths = [line for line in links if ": uplink0@" not in line]  # the other machine's link is the test's
    assert veths == [], veths
    assert box.leases(install.DEFAULT_NETWORK) == []
    assert os.listdir(os.path.join(daemon.top, "cni-cache", "results")) == []
    assert box.group_chains() == []


@pytest.mark.parametrize("node", ["ipv4", "node-shape"], indirect=True)
def test_ten_pods_at_once_get_ten_addresses(node: tuple[cri.RuntimeClient, hcc.CriContainerd, sb.Sandbox]) -> None:
    client, daemon, box = node
    with ThreadPoolExecutor(10) as pool:  # kubelet starts a node's pods in parallel
        ids = list(pool.map(lambda i: client.run_pod_sandbox(pod(daemon, f"p{i}")), range(10)))
    statuses = [client.pod_sandbox_status(i) for i in ids]
    addresses = {s.ip for s in statuses}
    assert len(addresses) == 10 and all(ipaddress.ip_address(a) in SUBNET for a in addresses), addresses
    extra = {a for s in statuses for a in s.additional_ips}   # node shape: dual-stack, an IPv6 address each
    assert len(extra) in (0, 10) and all(ipaddress.ip_address(a) in SUBNET6 for a in extra), extra
    assert sorted(box.leases(install.DEFAULT_NETWORK)) == sorted(addresses | extra)
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(client.remove_pod_sandbox, ids))  # Remove stops a running sandbox first
    _gone(client, daemon, box)


def _first_line(proc: subprocess.Popen[str]) -> str:
    """The first line ``proc`` writes, or "" when it writes none within PATIENCE (or exits)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], PATIENCE)
    return proc.stdout.readline() if ready else ""   # one line, flushed at once: no partial read


@pytest.mark.parametrize("node", ["ipv4", "node-shape"], indirect=True)
def test_a_hostport_answers_another_machine(node: tuple[cri.RuntimeClient, hcc.CriContainerd, sb.Sandbox]) -> None:
    client, daemon, box = node
    record_file = os.path.join(daemon.top, "cni-calls.jsonl")
    cnirecord.record(box.bin_dir, ["netkit-bridge", "loopback"], record_file)
    other = box.machine(["192.0.2.1"], "192.0.2.2")
    config = pod(daemon, "web", port_mappings=[cri.PortMapping(container_port=8080, host_port=18080)],
                 dns=cri.DNSConfig(servers=["192.0.2.53"], searches=["default.svc.cluster.local"]),
                 annotations={"netkit.test/note": "recorded"})
    sandbox_id = client.run_pod_sandbox(config)
    status = client.pod_sandbox_status(sandbox_id, verbose=True)
    server = subprocess.Popen([sys.executable, sb.TRAFFIC, "serve-in", "8080", f"web=/proc/{status.pid}/ns/net"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert _first_line(server).strip() == "ready"
        answer = other.ask("tcp", "192.0.2.1", 18080)
        assert answer is not None and answer.startswith("web "), answer
    finally:
        server.kill()
        server.wait()
    # What containerd sent, as kubelet's pods get it: K8S_POD_* in CNI_ARGS, the hostPort in
    # runtimeConfig, only the capabilities the conflist declares (portMappings: no dns, no pod
    # annotations), with go-cni 1.6's Go field names as keys, which netkit reads as Go's JSON does.
    adds = [c for c in cnirecord.calls(record_file) if c.command == "ADD"]
    assert {c.plugin for c in adds} == {"netkit-bridge", "loopback"}
    bridge = next(c for c in adds if c.plugin == "netkit-bridge")
    assert bridge.ifname == "eth0" and bridge.containerid == sandbox_id
    assert bridge.args["K8S_POD_NAMESPACE"] == "default" and bridge.args["K8S_POD_NAME"] == "web"
    assert bridge.args["K8S_POD_INFRA_CONTAINER_ID"] == sandbox_id
    assert bridge.args["K8S_POD_UID"] == config.uid and bridge.args["IgnoreUnknown"] == "1"
    assert bridge.config["runtimeConfig"] == {"portMappings": [
        {"HostPort": 18080, "ContainerPort": 8080, "Protocol": "tcp", "HostIP": ""}]}, bridge.config["runtimeConfig"]
    assert parse_port_mappings(bridge.config["runtimeConfig"]["portMappings"]) == [PortMapping(18080, 8080, "tcp", "")]
    loopback = next(c for c in adds if c.plugin == "loopback")
    assert loopback.ifname == "lo" and loopback.config["type"] == "loopback"
    client.stop_pod_sandbox(sandbox_id)
    _network_gone(daemon, box)   # the hostPort's rule too, at Stop
    client.remove_pod_sandbox(sandbox_id)
    assert {c.plugin for c in cnirecord.calls(record_file) if c.command == "DEL"} == {"netkit-bridge", "loopback"}
    _gone(client, daemon, box)


@pytest.mark.parametrize("node", ["declaring"], indirect=True)
def test_declared_dns_and_pod_annotations_reach_the_plugin(
        node: tuple[cri.RuntimeClient, hcc.CriContainerd, sb.Sandbox]) -> None:
    # containerd sends what a conflist declares (go-cni: WithCapabilityDNS, the pod's annotations):
    # netkit takes them without failing the ADD.
    client, daemon, box = node
    record_file = os.path.join(daemon.top, "cni-calls.jsonl")
    cnirecord.record(box.bin_dir, ["netkit-bridge"], record_file)
    config = pod(daemon, "web", dns=cri.DNSConfig(servers=["192.0.2.53"], searches=["default.svc.cluster.local"],
                                                  options=["ndots:5"]),
                 annotations={"netkit.test/note": "recorded"})
    sandbox_id = client.run_pod_sandbox(config)
    assert ipaddress.ip_address(client.pod_sandbox_status(sandbox_id).ip) in SUBNET
    (add,) = [c for c in cnirecord.calls(record_file) if c.command == "ADD"]
    runtime = add.config["runtimeConfig"]
    assert runtime["dns"] == {"Servers": ["192.0.2.53"], "Searches": ["default.svc.cluster.local"],
                              "Options": ["ndots:5"]}, runtime
    assert runtime["io.kubernetes.cri.pod-annotations"]["netkit.test/note"] == "recorded", runtime
    client.remove_pod_sandbox(sandbox_id)
    _gone(client, daemon, box)
