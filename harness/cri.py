"""A CRI (Kubernetes Container Runtime Interface, API v1) test client: the calls kubelet makes to run
a pod's sandbox, over gRPC to containerd's CRI plugin (harness/cricontainerd.py starts one).

The messages are written here from the CRI API v1's field numbers (package ``runtime.v1``,
k8s.io/cri-api's api.proto) and encoded by harness/protowire.py; grpcio carries them with its generic
unary calls (``Channel.unary_unary`` with our serializers), so no generated code and no protobuf
runtime are needed: see protowire's docstring for why.  Only what the tests send and read is
modelled; fields a response carries beyond those are decoded and ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, TypeVar

import grpc

from harness import protowire as pw

SERVICE = "/runtime.v1.RuntimeService/"
CALL_TIMEOUT_S = 120   # only stops a hang: RunPodSandbox runs the CNI ADD, which may start the agent

PROTOCOLS = {"tcp": 0, "udp": 1, "sctp": 2}   # runtime.v1.Protocol
SANDBOX_READY, SANDBOX_NOTREADY = 0, 1          # runtime.v1.PodSandboxState
NAMESPACE_POD = 0                               # runtime.v1.NamespaceMode: the pod's own network namespace


@dataclass
class PortMapping:
    """runtime.v1.PortMapping: a hostPort (protocol = 1, container_port = 2, host_port = 3, host_ip = 4)."""

    container_port: int
    host_port: int
    protocol: str = "tcp"
    host_ip: str = ""

    def encode(self) -> bytes:
        return (pw.uint(1, PROTOCOLS[self.protocol]) + pw.uint(2, self.container_port)
                + pw.uint(3, self.host_port) + pw.string(4, self.host_ip))


@dataclass
class DNSConfig:
    """runtime.v1.DNSConfig (servers = 1, searches = 2, options = 3)."""

    servers: list[str] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)

    def encode(self) -> bytes:
        return pw.strings(1, self.servers) + pw.strings(2, self.searches) + pw.strings(3, self.options)


@dataclass
class PodSandboxConfig:
    """runtime.v1.PodSandboxConfig, with the pod's metadata and its Linux part flattened in.

    metadata = 1 (PodSandboxMetadata: name = 1, uid = 2, namespace = 3, attempt = 4), hostname = 2,
    log_directory = 3, dns_config = 4, port_mappings = 5, labels = 6, annotations = 7, linux = 8
    (LinuxPodSandboxConfig: cgroup_parent = 1, security_context = 2 (LinuxSandboxSecurityContext:
    namespace_options = 1 (NamespaceOption: network = 1, pid = 2, ipc = 3))).
    """

    name: str
    uid: str
    namespace: str = "default"
    attempt: int = 0
    hostname: str = ""
    log_directory: str = ""
    dns: DNSConfig | None = None
    port_mappings: list[PortMapping] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    cgroup_parent: str = ""

    def encode(self) -> bytes:
        metadata = pw.string(1, self.name) + pw.string(2, self.uid) + pw.string(3, self.namespace) \
            + pw.uint(4, self.attempt)
        # network = POD is proto3's default 0; the message is still sent, as kubelet does.
        namespaces = pw.uint(1, NAMESPACE_POD) + pw.uint(2, NAMESPACE_POD) + pw.uint(3, NAMESPACE_POD)
        linux = pw.string(1, self.cgroup_parent) + pw.blob(2, pw.blob(1, namespaces))
        return (pw.blob(1, metadata) + pw.string(2, self.hostname) + pw.string(3, self.log_directory)
                + (pw.blob(4, self.dns.encode()) if self.dns is not None else b"")
                + pw.messages(5, (p.encode() for p in self.port_mappings))
                + pw.string_map(6, self.labels) + pw.string_map(7, self.annotations) + pw.blob(8, linux))


@dataclass
class SandboxStatus:
    """What runtime.v1.PodSandboxStatus says that the tests read: id = 1, metadata = 2, state = 3,
    network = 5 (PodSandboxNetworkStatus: ip = 1, additional_ips = 2 (PodIP: ip = 1))."""

    id: str
    name: str
    namespace: str
    state: int
    ip: str
    additional_ips: list[str]
    info: dict[str, str] = field(default_factory=dict)   # verbose only: the runtime's own details

    @property
    def pid(self) -> int:
        """The sandbox's (pause) process, from containerd's verbose info (``info``: JSON with ``pid``)."""
        return int(json.loads(self.info["info"])["pid"])

    @property
    def ready(self) -> bool:
        return self.state == SANDBOX_READY


def _status(data: bytes) -> SandboxStatus:
    """PodSandboxStatusResponse (status = 1, info = 2) -> SandboxStatus."""
    status = pw.nested(pw.decode(data), 1)
    metadata, network = pw.nested(status, 2), pw.nested(status, 5)
    extra = [pw.text(pw.decode(raw), 1) for raw in network.get(2, []) if isinstance(raw, bytes)]
    return SandboxStatus(id=pw.text(status, 1), name=pw.text(metadata, 1), namespace=pw.text(metadata, 3),
                         state=pw.number(status, 3), ip=pw.text(network, 1), additional_ips=extra,
                         info=pw.decoded_map(pw.decode(data), 2))


def _sandbox_ids(data: bytes) -> list[str]:
    """ListPodSandboxResponse (items = 1, PodSandbox: id = 1) -> the sandboxes' ids."""
    return [pw.text(pw.decode(raw), 1) for raw in pw.decode(data).get(1, []) if isinstance(raw, bytes)]


T = TypeVar("T")


class RuntimeClient:
    """The RuntimeService of the CRI endpoint at unix socket ``socket``; a context manager."""

    def __init__(self, socket: str) -> None:
        self.channel = grpc.insecure_channel(f"unix://{socket}")

    def __enter__(self) -> RuntimeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the gRPC channel."""
        self.channel.close()

    def _call(self, method: str, request: bytes, parse: Callable[[bytes], T]) -> T:
        stub = self.channel.unary_unary(SERVICE + method, request_serializer=lambda b: b,
                                        response_deserializer=lambda b: b)
        return parse(stub(request, timeout=CALL_TIMEOUT_S))

    def version(self) -> tuple[str, str, str]:
        """Version: (runtime_name = 2, runtime_version = 3, runtime_api_version = 4)."""
        fields = self._call("Version", pw.string(1, "v1"), pw.decode)
        return pw.text(fields, 2), pw.text(fields, 3), pw.text(fields, 4)

    def run_pod_sandbox(self, config: PodSandboxConfig, runtime_handler: str = "") -> str:
        """RunPodSandbox (config = 1, runtime_handler = 2): the new sandbox's id (pod_sandbox_id = 1)."""
        request = pw.blob(1, config.encode()) + pw.string(2, runtime_handler)
        return self._call("RunPodSandbox", request, lambda b: pw.text(pw.decode(b), 1))

    def pod_sandbox_status(self, sandbox_id: str, verbose: bool = False) -> SandboxStatus:
        """PodSandboxStatus (pod_sandbox_id = 1, verbose = 2)."""
        return self._call("PodSandboxStatus", pw.string(1, sandbox_id) + pw.uint(2, verbose), _status)

    def stop_pod_sandbox(self, sandbox_id: str) -> None:
        """StopPodSandbox (pod_sandbox_id = 1): the sandbox's processes killed, its network torn down."""
        self._call("StopPodSandbox", pw.string(1, sandbox_id), pw.decode)

    def remove_pod_sandbox(self, sandbox_id: str) -> None:
        """RemovePodSandbox (pod_sandbox_id = 1): the sandbox forgotten (stopped first if it runs)."""
        self._call("RemovePodSandbox", pw.string(1, sandbox_id), pw.decode)

    def list_pod_sandbox(self) -> list[str]:
        """ListPodSandbox with no filter: every sandbox's id."""
        return self._call("ListPodSandbox", b"", _sandbox_ids)
