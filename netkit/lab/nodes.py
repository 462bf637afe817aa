"""A lab host as a Kubernetes node: the nodes file, `netkit node` kept running, the network ``pods``.

On a host with ``kubernetes: {podCIDR: ...}`` provisioning writes the cluster's nodes (every node
host's name, InternalIPs on the cluster link and podCIDRs: the same file on every host, made from
the scenario alone, so a Vagrant box writes it too) and keeps one ``netkit node --nodes-file``
running in the host's namespace, as the DaemonSet does on a real node.  That process writes the
node's conflist and the routes to the other nodes' pods; the host's runtime network ``pods`` *is*
that conflist (a symlink in the root's networks), so the lab's containers on ``pods`` get the
node's pod addresses as a Kubernetes pod would.  A host that stops being a node has its process
stopped and its ``pods`` network removed; its routes stay, as after `netkit node` ends on a node.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import yaml

from netkit import errors, fileio, procinfo
from netkit.lab.scenario import POD_NETWORK, Host, Scenario
from netkit.node import conflist
from netkit.runtime.root import Root

READY_TIMEOUT = 30.0  # only stops a hang: the process is ready once it wrote the conflist
STOP_TIMEOUT = 10.0


class NodeFiles:
    """Where a node host's part lives in its root: ``<root>/kubernetes/``."""

    def __init__(self, root: Root) -> None:
        self.dir = os.path.join(root.path, "kubernetes")
        self.nodes = os.path.join(self.dir, "nodes.yaml")
        self.conf_dir = os.path.join(self.dir, "net.d")
        self.conflist = os.path.join(self.conf_dir, conflist.FILE_NAME)
        self.ready = os.path.join(self.dir, "ready")
        self.log = os.path.join(self.dir, "node.log")
        self.pid = os.path.join(self.dir, "node.json")
        self.network = os.path.join(root.networks, f"{POD_NETWORK}.conflist")


def nodes_document(sc: Scenario) -> dict[str, object]:
    """The nodes file of the scenario's cluster (``netkit node --nodes-file``'s short form)."""
    return {"nodes": [{"name": h.name, "internalIPs": sc.internal_ips(h.name), "podCIDRs": [str(c) for c in h.pod_cidrs]}
                      for h in sc.nodes()]}


def node_argv(sc: Scenario, host: Host, root: Root) -> list[str]:
    """The `netkit node` command of ``host``: its leases in the host's root, the scenario's cluster CIDR."""
    files = NodeFiles(root)
    argv = [sys.executable, "-m", "netkit", "node", "--nodes-file", files.nodes, "--node-name", host.name,
            "--conf-dir", files.conf_dir, "--ipam-dir", root.ipam, "--ready-file", files.ready]
    for cidr in sc.cluster_cidrs:
        argv += ["--cluster-cidr", str(cidr)]
    return argv


def _running(files: NodeFiles) -> tuple[int, str, list[str]]:
    """(pid, start time, argv) of the `netkit node` this root started, if it still runs (the pid with
    its recorded start time: never a reused pid); (0, "", []) otherwise."""
    try:
        with open(files.pid, encoding="utf-8") as f:
            doc = json.load(f)
        pid, start, argv = int(doc["pid"]), str(doc["start"]), [str(a) for a in doc["argv"]]
    except (OSError, ValueError, KeyError, TypeError):
        return 0, "", []
    return (pid, start, argv) if procinfo.start_time(pid) == start else (0, "", [])


def _stop(files: NodeFiles) -> bool:
    """Stop the root's `netkit node` (SIGTERM, then SIGKILL); True when one was running."""
    pid, start, _ = _running(files)
    if pid:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while procinfo.start_time(pid) == start and time.monotonic() < deadline:
            time.sleep(0.05)
        if procinfo.start_time(pid) == start:
            os.kill(pid, signal.SIGKILL)
    try:
        os.unlink(files.pid)
    except FileNotFoundError:
        pass
    return bool(pid)


def _start(files: NodeFiles, argv: list[str]) -> None:
    with open(files.log, "ab") as log:
        # Its own session: it outlives this provisioning command, as the DaemonSet's container does.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    record = {"pid": proc.pid, "start": procinfo.start_time(proc.pid), "argv": argv}
    fileio.write_atomic(files.pid, json.dumps(record).encode())


def _last_line(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _serves(files: NodeFiles, host: Host) -> bool:
    """True once the conflist says the host's podCIDRs (after a change too, not only the first time)."""
    try:
        with open(files.conflist, encoding="utf-8") as f:
            ipam = json.load(f)["plugins"][0]["ipam"]
        have = {r["subnet"] for rs in ipam["ranges"] for r in rs}
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return False
    return os.path.exists(files.ready) and have == {str(c) for c in host.pod_cidrs}


def converge(sc: Scenario, host: Host, root: Root) -> list[str]:
    """Make ``host``'s node part what the scenario says (see the module docstring); what was done."""
    files = NodeFiles(root)
    if not host.is_node:
        done = [f"{host.name}: stopped netkit node"] if _stop(files) else []
        if os.path.lexists(files.network):
            os.unlink(files.network)
        return done
    fileio.ensure_dir(files.dir)
    body = yaml.safe_dump(nodes_document(sc), sort_keys=False).encode()
    try:
        with open(files.nodes, "rb") as f:
            same = f.read() == body
    except FileNotFoundError:
        same = False
    if not same:  # only on change: the process re-reads a file whose content changed
        fileio.write_atomic(files.nodes, body)
    done = []
    argv = node_argv(sc, host, root)
    if _running(files)[2] != argv:
        _stop(files)
        _start(files, argv)
        done.append(f"{host.name}: started netkit node ({', '.join(map(str, host.pod_cidrs))})")
    if not os.path.lexists(files.network):
        fileio.ensure_dir(root.networks)
        os.symlink(os.path.relpath(files.conflist, root.networks), files.network)
    deadline = time.monotonic() + READY_TIMEOUT
    while not _serves(files, host):
        if time.monotonic() > deadline or not _running(files)[0]:
            raise errors.CNIError(errors.INTERNAL, f"netkit node on {host.name} did not write its conflist",
                                  _last_line(files.log) or f"see {files.log}")
        time.sleep(0.05)
    return done
