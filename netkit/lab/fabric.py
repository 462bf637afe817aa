"""The local backend's machines and wires: one network namespace per host, veth links, segment bridges.

Everything is made inside the lab's own namespaces (a veth is created in one host and its peer
directly in the other; segment bridges live in a separate "fabric" namespace), so the machine's
own network never sees a lab interface.  Every step is idempotent: ``up`` twice converges.
"""

from __future__ import annotations

import hashlib
import os

from netkit import errors
from netkit.lab.scenario import Link, Scenario
from netkit.net import links, netns, sysctl

NETNS_DIR = "/run/netns"  # where `ip netns` looks, so users can `ip netns exec` into lab hosts


def _ensure_netns(path: str) -> None:
    if not netns.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        netns.remove(path)  # a stale file without a namespace behind it
        netns.create(path)


def _port_name(link: str, host: str) -> str:
    """The fabric-side name of ``host``'s port on segment ``link`` (unique in the fabric namespace)."""
    name = f"{link}.{host}"
    return name if len(name) <= 15 else "p" + hashlib.sha256(name.encode()).hexdigest()[:14]


def _veth(nl: links.Socket, here: str, there_name: str, there_ns: str) -> None:
    """A veth ``here`` in the current namespace with peer ``there_name`` in ``there_ns``, unless it exists."""
    link = links.lookup(nl, here)
    if link is None:
        links.create_veth(nl, here, there_name, there_ns, None, None)
        link = links.lookup(nl, here)
    if link is None:  # made a moment ago: someone removed it meanwhile
        raise errors.CNIError(errors.KERNEL, f"link {here} vanished after creation")
    links.up(nl, link.index)


def _wire(link: Link, host_ns: dict[str, str], fabric_ns: str) -> None:
    if link.kind == "veth":
        a, b = link.members
        with netns.entered(host_ns[a]), links.Socket() as nl:
            _veth(nl, link.name, link.name, host_ns[b])
        return
    _ensure_netns(fabric_ns)
    with netns.entered(fabric_ns), links.Socket() as nl:
        bridge = links.ensure_bridge(nl, link.name)
        for host in link.members:
            port = _port_name(link.name, host)
            _veth(nl, port, link.name, host_ns[host])
            links.attach(nl, port, bridge.index, False, None, f"netkit-lab {link.name} {host}")


def build(sc: Scenario, host_ns: dict[str, str], fabric_ns: str) -> None:
    """Make (or complete) every host namespace, link and address of the scenario."""
    for path in host_ns.values():
        _ensure_netns(path)
    for link in sc.links.values():
        _wire(link, host_ns, fabric_ns)
    for host in sc.hosts.values():
        with netns.entered(host_ns[host.name]), links.Socket() as nl:
            for link_name, iface in host.addresses.items():
                found = links.lookup(nl, link_name)
                if found is None:  # wired above: someone removed it meanwhile
                    raise errors.CNIError(errors.KERNEL, f"link {link_name} of {host.name} vanished")
                links.add_address(nl, found.index, iface)
                if link_name in host.addresses6:
                    # No duplicate address detection: every address of the lab is assigned from the
                    # file, and DAD would hold the address tentative (unusable) for a second or two.
                    sysctl.ensure(f"net/ipv6/conf/{link_name}/accept_dad", "0")
                    links.add_address(nl, found.index, host.addresses6[link_name])
                links.up(nl, found.index)


def remove(paths: list[str]) -> None:
    """Unbind the namespaces; the kernel frees each (and every link inside) once no process is in it."""
    for path in paths:
        netns.remove(path)
