"""The node's ``10-netkit.conflist``: pods on a bridge with addresses from the node's podCIDRs.

Shape (the shared decision of issue 18): netkit-bridge (``cni0``, gateway, hairpin, the
``portMappings`` capability; ``ipMasq`` off because the node's own masquerade rule, which knows the
cluster CIDR, does that job) with netkit-ipam (one range set per podCIDR, so two make a dual-stack
pod; a default route per family), then netkit-loopback.  Written atomically, and only when its
content changes, so a runtime never reads half a file and an unchanged node writes nothing.
"""

from __future__ import annotations

import json
import os

from netkit import fileio
from netkit.firewall.backend import CONFIG_KEY
from netkit.node import model

FILE_NAME = "10-netkit.conflist"
NETWORK_NAME = "netkit"
BRIDGE = "cni0"
DEFAULT_ROUTE = {4: "0.0.0.0/0", 6: "::/0"}


def build(pod_cidrs: tuple[model.Network, ...], ipam_dir: str = "", firewall: str = "") -> dict[str, object]:
    """The conflist for a node with these pod subnets (at least one); IPv4 first when both.
    ``ipam_dir``: where netkit-ipam keeps the leases (empty: its default, /var/lib/cni/networks).
    ``firewall``: the firewall backend the bridge plugin is to use (empty: it picks the host's), so
    the plugins' rules (portmap, isolation) and the node's masquerade are in one backend."""
    if not pod_cidrs:
        raise ValueError("a conflist needs at least one pod subnet")
    ordered = sorted(pod_cidrs, key=lambda n: n.version)
    ipam: dict[str, object] = {
        "type": "netkit-ipam",
        "ranges": [[{"subnet": str(net), "gateway": str(net.network_address + 1)}] for net in ordered],
        "routes": [{"dst": DEFAULT_ROUTE[net.version]} for net in ordered],
    }
    if ipam_dir:
        ipam["dataDir"] = ipam_dir
    bridge: dict[str, object] = {
        "type": "netkit-bridge",
        "bridge": BRIDGE,
        "isGateway": True,
        "ipMasq": False,
        "hairpinMode": True,
        "capabilities": {"portMappings": True},
        "ipam": ipam,
    }
    if firewall:
        bridge[CONFIG_KEY] = firewall
    return {"cniVersion": "1.0.0", "name": NETWORK_NAME, "plugins": [bridge, {"type": "netkit-loopback"}]}


def write(conf_dir: str, pod_cidrs: tuple[model.Network, ...], ipam_dir: str = "", firewall: str = "") -> bool:
    """Write the conflist for ``pod_cidrs`` (``build``'s options) into ``conf_dir`` unless it
    already says that; True when the file was (re)written."""
    path = os.path.join(conf_dir, FILE_NAME)
    body = (json.dumps(build(pod_cidrs, ipam_dir, firewall), indent=2) + "\n").encode()
    try:
        with open(path, "rb") as f:
            if f.read() == body:
                return False
    except FileNotFoundError:
        pass
    fileio.ensure_dir(conf_dir)
    fileio.write_atomic(path, body)
    return True
