"""deploy/kubernetes/netkit.yaml: each document is a valid object of its kind, checked with the
official Kubernetes client's models (kubernetes.client; the API server cannot run here), and says
what the node needs (issue 18): nodes read-only for netkit's account, a privileged host-network,
host-PID DaemonSet on every node whatever its taints, the plugins installed by an init container
that fails rather than install launchers the host cannot run, each container's host paths, the
agent on the launchers' socket, the node's readiness by its ready file; the commands it runs are
netkit's own.

The models' deserializer drops a key it does not know, so a misspelled field would pass unseen:
each object is serialized back and must equal the document as written.
"""

from __future__ import annotations

import json
import os
from typing import Any

import click
import pytest
import yaml
from kubernetes import client

from netkit.agent import protocol
from netkit.cli.commands import main as netkit_cli

DEPLOY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "deploy", "kubernetes")
MODELS = {("v1", "ServiceAccount"): "V1ServiceAccount",
          ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
          ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
          ("apps/v1", "DaemonSet"): "V1DaemonSet"}


def _objects() -> dict[str, Any]:
    """Kind -> the document deserialized into its model (each kind appears once)."""
    with open(os.path.join(DEPLOY, "netkit.yaml")) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    api = client.ApiClient()
    out = {}
    for doc in docs:
        model = MODELS[(doc["apiVersion"], doc["kind"])]
        obj = api.deserialize(json.dumps(doc), model, "application/json")  # as from the API server
        assert api.sanitize_for_serialization(obj) == doc, f"{doc['kind']}: a field the model does not know"
        assert doc["kind"] not in out
        out[doc["kind"]] = obj
    return out


def test_every_document_is_a_valid_object_of_its_kind() -> None:
    objects = _objects()
    assert set(objects) == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet"}
    role, binding, account = objects["ClusterRole"], objects["ClusterRoleBinding"], objects["ServiceAccount"]
    assert [(r.api_groups, r.resources, sorted(r.verbs)) for r in role.rules] == [([""], ["nodes"], ["get", "list", "watch"])]
    assert binding.role_ref.name == role.metadata.name and binding.role_ref.kind == "ClusterRole"
    assert [(s.kind, s.name, s.namespace) for s in binding.subjects] == [
        ("ServiceAccount", account.metadata.name, account.metadata.namespace)]


def _daemonset_spec() -> Any:
    return _objects()["DaemonSet"].spec.template.spec


def _containers() -> dict[str, Any]:
    spec = _daemonset_spec()
    return {c.name: c for c in spec.init_containers + spec.containers}


def _mounts(container: Any) -> dict[str, tuple[str, bool, str | None]]:
    """The container's mount paths -> (the host path, read-only, propagation); an emptyDir's host
    path is ""."""
    volumes = {v.name: v for v in _daemonset_spec().volumes}
    assert {m.name for m in container.volume_mounts} <= set(volumes), container.name
    return {m.mount_path: (volumes[m.name].host_path.path if volumes[m.name].host_path else "",
                           bool(m.read_only), m.mount_propagation) for m in container.volume_mounts}


def _option(argv: list[str], name: str) -> str:
    """The value of option ``name`` in a command line (given once)."""
    assert argv.count(name) == 1, (name, argv)
    return argv[argv.index(name) + 1]


def test_the_daemonset_runs_privileged_on_the_host_network_and_pids_of_every_node() -> None:
    objects = _objects()
    ds = objects["DaemonSet"]
    spec = ds.spec.template.spec
    assert ds.spec.selector.match_labels.items() <= ds.spec.template.metadata.labels.items()
    assert spec.host_network and spec.service_account_name == objects["ServiceAccount"].metadata.name
    # The agent identifies each launcher by its pid (SO_PEERCRED, /proc/<pid>): a host process's pid
    # is 0 seen from the pod's own PID namespace, and every request would be refused.
    assert spec.host_pid
    assert [(t.operator, t.key, t.effect) for t in spec.tolerations] == [("Exists", None, None)]  # every taint
    containers = _containers()
    assert set(containers) == {"install", "agent", "node"}
    assert all(c.security_context.privileged for c in containers.values())
    node_env = {e.name: e.value_from.field_ref.field_path for e in containers["node"].env}
    assert node_env == {"NODE_NAME": "spec.nodeName"}


# Each container's host mounts: where a path is compiled into what the host runs (the launchers, the
# agent's socket) or named in what the host hands the plugins (CNI_PATH, the netns path), it is the
# host's own; (read-only, propagation) where it matters.
RW, RO = (False, None), (True, None)
MOUNTS = {
    "install": {"/opt/cni/bin": RW, "/etc/cni/net.d": RW, "/run/netkit": RW},
    "agent": {"/run/netkit": RW,
              "/opt/cni/bin": RO,                                   # netkit-bridge execs netkit-ipam there
              "/var/run/netns": (False, "HostToContainer"),         # the pods' namespaces made after start
              "/var/lib/cni/networks": RW, "/var/lib/netkit": RW,   # leases and state survive a restart
              "/run/xtables.lock": RW, "/lib/modules": RO},
    "node": {"/etc/cni/net.d": RW, "/run/netkit": RW, "/run/xtables.lock": RW, "/lib/modules": RO},
}


@pytest.mark.parametrize("container", sorted(MOUNTS))
def test_each_container_mounts_the_host_paths_it_uses(container: str) -> None:
    mounts = {path: how for path, how in _mounts(_containers()[container]).items() if how[0]}
    assert mounts == {path: (path, *how) for path, how in MOUNTS[container].items()}


def test_the_agents_socket_is_the_one_compiled_into_the_launchers() -> None:
    # `netkit cni install` compiles protocol.DEFAULT_SOCKET into every launcher (it has no --socket
    # of its own for them): the agent must serve exactly there, and its readiness probe ask there.
    agent = _containers()["agent"]
    assert _option(agent.command, "--socket") == protocol.DEFAULT_SOCKET
    assert _option(agent.readiness_probe._exec.command, "--socket") == protocol.DEFAULT_SOCKET
    assert "--replace" in agent.command


def test_the_install_fails_rather_than_write_launchers_the_host_cannot_run() -> None:
    install = _containers()["install"]
    assert {"--require-native", "--loopback", "--no-conflist"} <= set(install.command)
    assert {e.name: e.value for e in install.env} == {"CC": "cc -static"}


def test_the_node_is_ready_by_its_own_ready_file_in_an_emptydir() -> None:
    node = _containers()["node"]
    ready = _option(node.command, "--ready-file")
    assert node.readiness_probe._exec.command == ["test", "-f", ready]
    where = {path: host for path, (host, _, _) in _mounts(node).items()}
    assert where.get(os.path.dirname(ready)) == ""   # an emptyDir: an earlier pod's file never counts


@pytest.mark.parametrize("container", ["install", "agent", "node"])
def test_the_daemonsets_commands_are_netkits(container: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The container's command, with the container's environment (a field reference stands for the
    value the kubelet puts there), parses as a netkit command line (click, nothing run)."""
    found = _containers()[container]
    for env in found.env or []:
        monkeypatch.setenv(env.name, env.value or f"from-{env.value_from.field_ref.field_path}")
    argv = found.command
    assert argv[0] == "netkit"
    cmd: click.Command = netkit_cli
    rest = list(argv[1:])
    while isinstance(cmd, click.Group) and rest and rest[0] in cmd.commands:
        cmd, rest = cmd.commands[rest[0]], rest[1:]
    ctx = cmd.make_context(" ".join(argv[:len(argv) - len(rest)]), rest)  # an unknown option or bad value raises
    assert not ctx.args, f"left unparsed: {ctx.args} of {argv}"
