"""What a port published on 127.0.0.1 and a bridge's route_localnet must not open, on both backends.

Topology: the sandbox host with a bridge and container A (serving on port 80, published as
127.0.0.1:8081), an uplink to another machine X.  Attackers are allowed what root in their own
namespace can do: X and A route 127.0.0.1 towards the host and accept loopback addresses on their
interface (route_localnet), the CVE-2020-8558 technique.  Each case has a control showing the path
is real, so "unreachable" cannot pass by accident.

(Also covered elsewhere, not repeated here: hostIP binding and network isolation in
tests/plugins/test_portmap.py, the agent's root-only peers in tests/agent/test_agent.py.)
"""

from __future__ import annotations

import subprocess
import sys
from typing import Iterator

import pytest

from tests.sandbox import Namespace, Sandbox, bridge_conf

HOST, MACHINE, GATEWAY = "10.30.0.1", "10.30.0.2", "10.20.0.1"
LOCAL_ONLY = 9999  # a host service bound to 127.0.0.1 only
OPEN = 9000  # a host service on all addresses: the control of the host's own address



def _drop_localnet_guard(box: Sandbox) -> None:
    """Remove netkit's drop of 127/8 arriving from outside, for a control: the path is then open."""
    if box.firewall == "nftables":
        box.host.run("nft", "flush", "chain", "inet", "netkit", "localnet", check=True)
    else:
        box.host.run("iptables-legacy", "-t", "raw", "-F", "NETKIT-LOCALNET", check=True)


@pytest.fixture
def published(fw_inproc: Sandbox) -> Iterator[tuple[Sandbox, Namespace, Namespace]]:
    """(box, machine X, container A): A serves on 80, published on 127.0.0.1:8081; the host serves 127.0.0.1:9999
    and, on all its addresses, port ``OPEN``."""
    box = fw_inproc
    x = box.machine([HOST], MACHINE)
    a = box.container()
    conf = bridge_conf(box, hairpinMode=True, capabilities={"portMappings": True},
                       runtimeConfig={"portMappings": [{"hostPort": 8081, "containerPort": 80, "hostIP": "127.0.0.1"}]})
    rc, out = box.call("netkit-bridge", "ADD", conf, a)
    assert rc == 0, out
    procs = [a.serve("A", 80), box.host.serve("H", OPEN), subprocess.Popen(
        ["ip", "netns", "exec", box.host.name, sys.executable, "-c",
         "import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
         f"s.bind(('127.0.0.1', {LOCAL_ONLY}))\ns.listen(8)\nprint('ready', flush=True)\n"
         "while True:\n    c, peer = s.accept()\n    c.sendall(f'LOCAL {peer[0]}'.encode())\n    c.close()\n"],
        stdout=subprocess.PIPE, text=True)]
    assert procs[2].stdout is not None and procs[2].stdout.readline().strip() == "ready"
    try:
        # Controls: the mapping and the local service answer where they should.
        assert (box.host.ask("tcp", "127.0.0.1", 8081) or "").startswith("A ")
        assert (box.host.ask("tcp", "127.0.0.1", LOCAL_ONLY) or "").startswith("LOCAL ")
        yield box, x, a
    finally:
        for p in procs:
            p.kill()
            p.wait()
        assert box.call("netkit-bridge", "DEL", conf, a) == (0, None)


def _route_loopback_via(ns: Namespace, gateway: str) -> None:
    """Make ``ns`` send 127.0.0.1 to ``gateway`` and accept loopback addresses on eth0."""
    ns.run("ip", "addr", "flush", "dev", "lo", check=True)
    ns.run("sysctl", "-qw", "net.ipv4.conf.eth0.route_localnet=1", check=True)
    ns.run("ip", "route", "add", "127.0.0.1/32", "via", gateway, "dev", "eth0", check=True)


def test_port_on_localhost_is_not_published_on_the_hosts_addresses(published: tuple) -> None:
    box, x, _ = published
    # Controls: both clients reach a service on the host's address.
    assert x.unanswered("tcp", HOST, 8081, control=x.ask("tcp", HOST, OPEN))
    assert box.host.unanswered("tcp", HOST, 8081, control=box.host.ask("tcp", HOST, OPEN))


def test_port_on_localhost_is_unreachable_from_another_machine_routing_127_0_0_1_to_the_host(
        published: tuple) -> None:
    box, x, _ = published
    _route_loopback_via(x, HOST)

    def without_the_guard() -> str | None:
        # Control: without netkit's guard X's crafted packets get to the published port, so the
        # path above was really tried.
        _drop_localnet_guard(box)
        got = x.ask("tcp", "127.0.0.1", 8081)
        assert (got or "").startswith("A "), got
        return got

    assert x.unanswered("tcp", "127.0.0.1", 8081, control=without_the_guard)


def test_container_cannot_reach_the_hosts_loopback_only_services(published: tuple) -> None:
    box, _, a = published
    _route_loopback_via(a, GATEWAY)

    def without_the_guard() -> str | None:
        _drop_localnet_guard(box)  # control: the bridge's route_localnet alone would let it in
        got = a.ask("tcp", "127.0.0.1", LOCAL_ONLY)
        assert (got or "").startswith("LOCAL "), got
        return got

    assert a.unanswered("tcp", "127.0.0.1", LOCAL_ONLY, control=without_the_guard)


def test_another_machine_cannot_reach_the_hosts_loopback_services(published: tuple) -> None:
    # The uplink keeps the kernel's default (route_localnet=0): only the bridge got it.
    box, x, _ = published
    _route_loopback_via(x, HOST)

    def with_route_localnet_and_without_the_guard() -> str | None:
        box.host.run("sysctl", "-qw", "net.ipv4.conf.uplink0.route_localnet=1", check=True)
        _drop_localnet_guard(box)
        got = x.ask("tcp", "127.0.0.1", LOCAL_ONLY)  # control: the path is real
        assert (got or "").startswith("LOCAL "), got
        return got

    assert box.host.run("sysctl", "-n", "net.ipv4.conf.uplink0.route_localnet").stdout.strip() == "0"
    assert box.host.run("sysctl", "-n", "net.ipv4.conf.all.route_localnet").stdout.strip() == "0"
    assert x.unanswered("tcp", "127.0.0.1", LOCAL_ONLY, control=with_route_localnet_and_without_the_guard)
