"""One host's part of a lab, built in the current network namespace with one netkit root.

This is what ``netkit lab up FILE --host NAME`` does: on a Vagrant box (the box is the host), and
inside each host namespace of the local backend.  It converges: routes replaced, missing networks
created, containers whose spec changed (or that died) recreated, containers the scenario no
longer has removed.
"""

from __future__ import annotations

import hashlib
import json
import socket
import sys
import time

from netkit import errors
from netkit.lab import nodes, probe
from netkit.lab.scenario import POD_NETWORK, Container, Host, Network, Scenario, ScenarioError, split_target
from netkit.lab.serve import serve_args, serve_ports
from netkit.runtime import containers, networks, state
from netkit.runtime.root import Root

LABEL_LAB = "netkit.lab"
LABEL_SPEC = "netkit.lab.spec"
READY_TIMEOUT = 15.0


def resolve_backend(sc: Scenario, ref: str, from_host: str) -> str:
    """HOST[@LINK]:PORT -> ADDRESS:PORT; ADDRESS:PORT and NAME:PORT as they are (a name is looked up by
    the proxy in its container, at each connection: through the network's DNS)."""
    target, port = split_target(ref)
    host, _, link = target.partition("@")
    if host in sc.hosts:
        return f"{sc.address_of(host, from_host, link)}:{port}"
    if not port.isdigit() or not target:
        raise ScenarioError(f"{sc.path}: backend {ref!r} is not HOST[@LINK]:PORT, ADDRESS:PORT or NAME:PORT")
    return ref


def command(sc: Scenario, host: Host, c: Container) -> list[str]:
    """The container's process: its cmd, or netkit's test servers for ``serve:``."""
    if c.cmd:
        return list(c.cmd)
    return [sys.executable, *serve_args(c.serve, lambda ref: resolve_backend(sc, ref, host.name))]


def _spec_hash(sc: Scenario, host: Host, c: Container) -> str:
    spec = {"cmd": command(sc, host, c), "net": c.net, "ports": c.ports, "ip": c.ip}
    if c.more_nets or c.aliases:  # absent otherwise: labs up before these existed keep their containers
        spec.update(more_nets=c.more_nets, aliases=c.aliases)
    if POD_NETWORK in c.nets and host.is_node:  # a pod is made again when its node's podCIDRs change
        spec.update(pod_cidrs=[str(n) for n in host.pod_cidrs])
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _routes(host: Host) -> None:
    from netkit.net.netlink import IPRoute

    with IPRoute() as ipr:
        for r in host.routes:
            family = socket.AF_INET if r.to.version == 4 else socket.AF_INET6
            ipr.route("replace", family=family, dst=str(r.to.network_address), dst_len=r.to.prefixlen, gateway=r.via)


def _same_network(root: Root, net: Network, subnets: str) -> bool:
    """True when the network ``root`` has (its subnets comma-separated) is the one the scenario asks for."""
    have = subnets.split(",") if subnets else []
    v6 = [s for s in have if ":" in s]
    if net.subnet not in (None, *have) or (net.ipv6 is None) != (not v6) or net.ipv6 not in (None, "auto", *v6):
        return False
    conf = networks.load(root, net.name)["plugins"][0]
    return (conf.get("isolate") == net.isolate and conf.get("icc") == net.icc
            and conf.get("ipMasq") == (not net.internal))


def _networks(root: Root, host: Host) -> None:
    present = {n.name: n for n in networks.listing(root)}
    for net in host.networks.values():
        options = {"isolate": str(net.isolate).lower(), "icc": str(net.icc).lower()}
        have = present.get(net.name)
        if have is not None:
            if _same_network(root, net, have.subnet):
                continue
            users = containers.users(root, net.name)
            for name in users:  # recreated below with the network's new shape
                containers.remove(root, name, force=True)
            containers.remove_network(root, net.name)
        subnets = [s for s in (net.subnet, net.ipv6) if s not in (None, "auto")]
        networks.create(root, net.name, subnets, None, net.internal, options, ipv6=net.ipv6 is not None)


def _network_specs(c: Container) -> list[str]:
    """The container's ``--network`` values: its aliases on each of its user networks (Docker's long form)."""
    out = []
    for net in c.nets:
        user = net not in (networks.DEFAULT, *networks.MODES) and not net.startswith("container:")
        out.append(",".join([f"name={net}", *(f"alias={a}" for a in c.aliases)]) if user and c.aliases else net)
    return out


def _wait_ready(rec: state.Container, c: Container) -> None:
    """Wait until the container's test servers answer on 127.0.0.1, so checks never race start-up."""
    ports = [("tcp", p) for k in ("http", "tcp", "proxy") for p in serve_ports(c.serve, k)]
    ports += [("udp", p) for p in serve_ports(c.serve, "udp")]
    path = rec.netns
    deadline = time.monotonic() + READY_TIMEOUT
    for proto, port in ports:
        while not probe.probe(path, proto, "127.0.0.1", port, timeout=0.5).reached:
            if time.monotonic() > deadline or not state.alive(state.refresh(rec)):
                raise errors.CNIError(errors.INTERNAL, f"container {c.name} does not answer on {proto}/{port}",
                                      f"see: netkit logs {c.name}")
            time.sleep(0.1)


def provision(sc: Scenario, host_name: str, root: Root) -> list[str]:
    """Build or converge ``host_name``'s networks, routes and containers here; what was done, line by line."""
    if host_name not in sc.hosts:
        raise ScenarioError(f"{sc.path}: no host {host_name!r} (hosts: {', '.join(sc.hosts)})")
    host = sc.hosts[host_name]
    done: list[str] = []
    root.prepare()
    networks.ensure_default(root)
    _routes(host)
    _networks(root, host)
    records = {r.name: state.refresh(r) for r in state.all_records(root)}
    wanted = {c.name for c in host.containers.values()}
    for name, rec in records.items():
        if rec.labels.get(LABEL_LAB) == sc.name and name not in wanted:
            containers.remove(root, name, force=True)
            done.append(f"{host_name}: removed {name}")
    done += nodes.converge(sc, host, root)  # after the removals: a host no longer a node has no pods left
    started: set[str] = set()
    for c in sc.container_order(host):
        digest = _spec_hash(sc, host, c)
        try:
            rec = state.find(root, c.name)
        except errors.CNIError:
            rec = None
        owner = c.net.split(":", 1)[1] if c.net.startswith("container:") else ""
        current = rec is not None and state.alive(rec) and rec.labels.get(LABEL_SPEC) == digest
        if current and owner not in started:  # a joiner follows its owner into the new namespace
            continue
        if rec is not None:
            containers.remove(root, c.name, force=True)
        opts = containers.RunOptions(command=command(sc, host, c), networks=_network_specs(c), publish=c.ports,
                                     name=c.name, detach=True, ip=c.ip, hostname=c.name,
                                     labels={LABEL_LAB: sc.name, LABEL_SPEC: digest})
        rec, _ = containers.run(root, opts)
        if c.serve:
            _wait_ready(rec, c)
        started.add(c.name)
        done.append(f"{host_name}: started {c.name} ({', '.join(c.nets)})")
    return done
