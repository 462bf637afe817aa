"""deploy/kubernetes/netkit.yaml: each document is a valid object of its kind, checked with the
official Kubernetes client's models (kubernetes.client; the API server cannot run here), and says
what the node needs (issue 18): nodes read-only for netkit's account, a privileged host-network
DaemonSet on every node whatever its taints, the plugins installed by an init container, the agent's
socket and the IPAM store on the host; the commands it runs are netkit's own.

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


def test_the_daemonset_runs_privileged_on_the_host_network_of_every_node() -> None:
    objects = _objects()
    ds = objects["DaemonSet"]
    spec = ds.spec.template.spec
    assert ds.spec.selector.match_labels.items() <= ds.spec.template.metadata.labels.items()
    assert spec.host_network and spec.service_account_name == objects["ServiceAccount"].metadata.name
    assert [(t.operator, t.key, t.effect) for t in spec.tolerations] == [("Exists", None, None)]  # every taint
    containers = {c.name: c for c in spec.init_containers + spec.containers}
    assert set(containers) == {"install", "agent", "node"}
    assert all(c.security_context.privileged for c in containers.values())
    volumes = {v.name: v for v in spec.volumes}
    for c in containers.values():
        assert {m.name for m in c.volume_mounts} <= set(volumes), c.name
    host = {m.mount_path: volumes[m.name].host_path.path for c in containers.values() for m in c.volume_mounts
            if volumes[m.name].host_path is not None}
    # Where a path is compiled into what the host runs (the launchers, the agent's socket), it is the host's.
    for path in ("/opt/cni/bin", "/etc/cni/net.d", "/run/netkit", "/var/lib/cni/networks", "/var/run/netns"):
        assert host[path] == path
    node_env = {e.name: e.value_from.field_ref.field_path for e in containers["node"].env}
    assert node_env == {"NODE_NAME": "spec.nodeName"}


@pytest.mark.parametrize("container", ["install", "agent", "node"])
def test_the_daemonsets_commands_are_netkits(container: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The container's command, with the container's environment (a field reference stands for the
    value the kubelet puts there), parses as a netkit command line (click, nothing run)."""
    spec = _objects()["DaemonSet"].spec.template.spec
    found = next(c for c in spec.init_containers + spec.containers if c.name == container)
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
