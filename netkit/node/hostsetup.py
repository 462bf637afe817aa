"""What the node's kernel must do for pods on other nodes to be reached: forward IP packets, and let
bridged pod traffic through the IP firewall hooks (br_netfilter), which a Service proxy's rules
(kube-proxy's iptables or nftables) need to see traffic between pods on one bridge."""

from __future__ import annotations

import os
import subprocess

from netkit import errors
from netkit.net import forwarding, sysctl

_BRIDGE_SYSCTLS = "/proc/sys/net/bridge"
_NF_CALL = {4: "net.bridge.bridge-nf-call-iptables", 6: "net.bridge.bridge-nf-call-ip6tables"}


def _load_br_netfilter() -> str | None:
    """Load the module when its switches are missing; the reason as one line when that fails."""
    if os.path.isdir(_BRIDGE_SYSCTLS):
        return None
    try:
        proc = subprocess.run(["modprobe", "br_netfilter"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"modprobe br_netfilter: {exc}"
    if proc.returncode != 0 or not os.path.isdir(_BRIDGE_SYSCTLS):
        return f"br_netfilter could not be loaded: {' '.join(proc.stderr.split()) or 'no net.bridge sysctls'}"
    return None


def prepare(versions: set[int]) -> tuple[list[str], list[str]]:
    """Forwarding and br_netfilter on for these IP versions: (what changed, what failed), a line each."""
    changed: list[str] = []
    failed: list[str] = []
    for version in sorted(versions):
        try:
            on = forwarding.ipv4_forwarding() if version == 4 else sysctl.read("net.ipv6.conf.all.forwarding") == "1"
            if not on:
                forwarding.enable(version)
                changed.append(f"IPv{version} forwarding switched on")
        except (OSError, errors.CNIError) as exc:
            failed.append(f"IPv{version} forwarding: {exc}")
    why = _load_br_netfilter()
    if why:
        failed.append(why)
        return changed, failed
    for version in sorted(versions):
        if not sysctl.br_netfilter_active(version):
            try:
                sysctl.ensure(_NF_CALL[version], "1")
                changed.append(f"{_NF_CALL[version]} = 1")
            except errors.CNIError as exc:
                failed.append(f"{_NF_CALL[version]}: {exc}")
    return changed, failed
