"""What every fault test checks: what an attachment may leave behind, and a working attachment."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from typing import Any, Callable

from netkit.firewall import ports
from tests.sandbox import Namespace, Sandbox, bridge_conf

NET = "testnet"
BRIDGE = "nkbr0"
GATEWAY = "10.20.0.1"
PORTS = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
         {"hostPort": 8080, "containerPort": 80, "protocol": "udp"}]
# Files of a lease directory that are the network's, not an attachment's.
_NETWORK_FILES = ("lock", ".netkit-boot-id", ".netkit-owners")


def full_conf(box: Sandbox, ports: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    """A bridge attachment that makes every kind of object: veth, lease, gateway, masquerade, DNAT."""
    conf = bridge_conf(box, ipMasq=True, isDefaultGateway=True, capabilities={"portMappings": True},
                       runtimeConfig={"portMappings": PORTS if ports is None else ports})
    conf.update(extra)
    return conf


def gc_conf(conf: dict[str, Any], valid: list[tuple[str, str]]) -> dict[str, Any]:
    """``conf`` for a GC keeping only the ``valid`` (containerID, ifname) attachments."""
    gc = {k: v for k, v in conf.items() if k != "runtimeConfig"}
    gc["cniVersion"] = "1.1.0"
    gc["cni.dev/valid-attachments"] = [{"containerID": cid, "ifname": ifname} for cid, ifname in valid]
    return gc


def lease_dir_files(box: Sandbox, network: str = NET) -> list[str]:
    """Files of the lease directory that belong to attachments: leases, and temp files of torn writes."""
    d = os.path.join(box.data_dir, network)
    if not os.path.isdir(d):
        return []
    return sorted(n for n in os.listdir(d) if n not in _NETWORK_FILES and not n.startswith("last_reserved_ip.")
                  and not (n.startswith("owner.") and ".tmp." not in n))


def orphan_hints(box: Sandbox, network: str = NET) -> list[str]:
    """Owner hints (an attachment's list of addresses) whose attachment holds none of them any more."""
    d = os.path.join(box.data_dir, network)
    out = []
    for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        if not name.startswith("owner.") or ".tmp." in name:
            continue
        with open(os.path.join(d, name), encoding="utf-8") as f:
            hint = json.load(f)
        held = []
        for addr in hint["addresses"]:
            try:
                with open(os.path.join(d, addr), encoding="utf-8") as f:
                    lease = json.load(f)
            except (OSError, ValueError):
                continue
            if (lease.get("containerID"), lease.get("ifname")) == (hint["containerID"], hint["ifname"]):
                held.append(addr)
        if not held:
            out.append(name)
    return out


def host_veths(box: Sandbox) -> list[str]:
    """netkit host-side veths in the sandbox host (the bridge itself is the network's, not listed)."""
    return [n for n in box.host.links() if n.startswith("nk") and n != BRIDGE]


def leftovers(box: Sandbox, containers: list[Namespace] = (), network: str = NET) -> list[str]:  # type: ignore[assignment]
    """Everything attachments left: lease files, host veths, rule groups, container interfaces."""
    out = [f"lease-dir {n}" for n in lease_dir_files(box, network)]
    out += [f"orphan owner hint {n}" for n in orphan_hints(box, network)]
    out += [f"veth {n}" for n in host_veths(box)]
    out += [f"chain {c}" for c in box.group_chains()]
    # The iptables backend's FORWARD accepts (present when FORWARD's policy is DROP) name their group.
    legacy = box.host.run("iptables-legacy-save", "-t", "filter").stdout
    # (The network's own NK-N- isolation rules live as long as its bridge: not an attachment's.)
    out += [f"filter rule {line}" for line in legacy.splitlines()
            if line.startswith("-A") and ("NK-D-" in line or "NK-M-" in line)]
    # The port index: each entry with its owner, and owners with no entry left.
    index = ports.PortIndex(key=ports.namespace_key(box.host.path))
    entries = {e: index.owner_of(e) for e in index.entries()}
    out += [f"port index {e} of {o}" for e, o in entries.items()]
    out += [f"port index owner {o}" for o in index.owners() if o not in entries.values()]
    out += [f"port index temp file {n}" for n in index.strays()]
    for c in containers:
        if os.path.exists(c.path):
            out += [f"{c.name}: {n}" for n in c.links() if n != "lo"]
    return out


def address(result: dict[str, Any]) -> str:
    """The first address of a result, without prefix."""
    return str(ipaddress.ip_interface(result["ips"][0]["address"]).ip)


def attach_and_prove(box: Sandbox, conf: dict[str, Any], c: Namespace, **kw: Any) -> dict[str, Any]:
    """ADD must succeed and the container must reach its gateway; returns the result."""
    rc, out = box.call("netkit-bridge", "ADD", conf, c, **kw)
    assert rc == 0, out
    assert c.ping(GATEWAY), f"{c.name} cannot reach the gateway after ADD"
    return out


def detach_clean(box: Sandbox, conf: dict[str, Any], c: Namespace, **kw: Any) -> None:
    """DEL must succeed and leave nothing of any attachment behind."""
    rc, out = box.call("netkit-bridge", "DEL", conf, c, **kw)
    assert (rc, out) == (0, None)
    assert leftovers(box, [c]) == []


def run_killed(box: Sandbox, env: dict[str, str], conf: dict[str, Any] | bytes,
               when: float | Callable[[], bool], plugin: str = "netkit-bridge", timeout: float = 60) -> int:
    """Exec ``plugin`` and SIGKILL it (unless it finished first); its exit status.

    ``when``: seconds after the exec, or a condition polled until it holds (what the test waits for,
    not a time).  ``timeout`` only stops a hung test.
    """
    import json
    import time

    exe = os.path.join(box.bin_dir, plugin)
    stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    # `ip netns exec` execs in place: the Popen's pid is the plugin's own.
    proc = subprocess.Popen(["ip", "netns", "exec", box.host.name, exe], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdin is not None
    proc.stdin.write(stdin)
    proc.stdin.close()
    if callable(when):
        deadline = time.monotonic() + timeout
        while not when() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
    else:
        time.sleep(when)
    proc.kill()
    return proc.wait(timeout=timeout)
