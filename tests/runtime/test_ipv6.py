"""`netkit network create --ipv6` and dual-stack containers through the runtime, both firewall backends:
the conflist, v6 addresses in the records, traffic between containers, out through masquerade, and a
published port reached over IPv6 from another machine."""

from __future__ import annotations

import ipaddress
import json
import os
import sys
from typing import Iterator

import pytest

from netkit.firewall import ports
from netkit.plugins import proxy6
from tests.runtime.conftest import Runtime
from tests.sandbox import TRAFFIC, Sandbox

HOST6, MACHINE6 = "fd00:30::1", "fd00:30::2"


class BackendRuntime(Runtime):
    """A runtime whose plugins use one firewall backend."""

    @property
    def env(self) -> dict[str, str]:
        return dict(super().env, NETKIT_FIREWALL_BACKEND=self.box.firewall)


@pytest.fixture(params=["nftables", "iptables"])
def rt6(request: pytest.FixtureRequest, box: Sandbox, tmp_path: os.PathLike[str]) -> Iterator[Runtime]:
    """A runtime on one firewall backend, in a sandbox host."""
    box.firewall = request.param
    runtime = BackendRuntime(box, os.path.join(str(tmp_path), "root"))
    try:
        yield runtime
    finally:
        runtime.cleanup()


def _conf(rt: Runtime, name: str) -> dict:
    return json.loads(rt("network", "inspect", name).stdout)["Config"]


def _addresses(rt: Runtime, name: str) -> list[str]:
    return [a.split("/")[0] for a in rt.inspect(name)["NetworkSettings"]["Addresses"]]


def _v6(rt: Runtime, name: str) -> str:
    return next(a for a in _addresses(rt, name) if ":" in a)


def test_network_create_ipv6_writes_both_families(rt: Runtime) -> None:
    rt("network", "create", "--ipv6", "auto6")
    ipam = _conf(rt, "auto6")["plugins"][0]["ipam"]
    v4, v6 = [ipaddress.ip_network(s[0]["subnet"]) for s in ipam["ranges"]]
    assert v4.version == 4 and v6.version == 6 and v6.prefixlen == 64 and v6.subnet_of(ipaddress.ip_network("fd00::/8"))
    assert ipam["ranges"][1][0]["gateway"] == str(v6.network_address + 1)
    assert ipam["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
    assert str(v6) in rt("network", "ls").stdout
    rt("network", "create", "--subnet", "10.56.0.0/24", "--subnet", "fd00:56::/64", "--gateway", "fd00:56::fe",
       "given6")
    ranges = _conf(rt, "given6")["plugins"][0]["ipam"]["ranges"]
    assert ranges == [[{"subnet": "10.56.0.0/24", "gateway": "10.56.0.1"}],
                      [{"subnet": "fd00:56::/64", "gateway": "fd00:56::fe"}]]
    # --ip with an IPv6 address fixes that family's; the other is chosen (one per range set).
    rt("run", "-d", "--name", "fixed6", "--network", "given6", "--ip", "fd00:56::50", "--", "sleep", "300")
    assert _addresses(rt, "fixed6") == ["10.56.0.2", "fd00:56::50"]
    rt("rm", "-f", "fixed6")
    # Without --ipv6 a network stays IPv4-only (Docker's default).
    rt("network", "create", "plain")
    assert len(_conf(rt, "plain")["plugins"][0]["ipam"]["ranges"]) == 1


@pytest.mark.parametrize("args, message", [
    (("--subnet", "10.57.0.0/24", "--subnet", "10.58.0.0/24"), "two IPv4 subnets"),
    (("--subnet", "fd00:57::/64", "--gateway", "fd00:58::1"), "is not in subnet"),
    (("--subnet", "fd00:56::/64",), "overlaps another network"),
])
def test_network_create_ipv6_errors_are_one_line(rt: Runtime, args: tuple[str, ...], message: str) -> None:
    rt("network", "create", "--subnet", "fd00:56::/64", "first")
    proc = rt("network", "create", *args, "bad", check=False)
    assert proc.returncode != 0 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_dual_stack_containers_talk_go_out_and_publish_over_ipv6(rt6: Runtime) -> None:
    rt = rt6
    x = rt.box.machine(["10.30.0.1"], "10.30.0.2")
    rt.box.host.run("ip", "-6", "addr", "add", f"{HOST6}/64", "dev", "uplink0", "nodad", check=True)
    x.run("ip", "-6", "addr", "add", f"{MACHINE6}/64", "dev", "eth0", "nodad", check=True)
    rt("network", "create", "--ipv6", "--subnet", "fd00:59::/64", "dual")
    rt("run", "-d", "--name", "web", "--network", "dual", "-p", "8080:80", "-p", "[::1]:8081:80", "--",
       sys.executable, TRAFFIC, "serve", "web", "80")
    rt("run", "-d", "--name", "client", "--network", "dual", "--", "sleep", "300")
    web6 = _v6(rt, "web")
    assert ipaddress.ip_address(web6) in ipaddress.ip_network("fd00:59::/64")  # the record holds it
    client = rt.netns("client")
    assert rt.wait_answer(lambda: (client.ask("tcp", web6, 80) or "").startswith("web "))
    assert x.ask("tcp", HOST6, 8080) == f"web {MACHINE6}"          # published, from another machine over IPv6
    for port in (8080, 8081):                                        # [::1], every address's and its own
        assert (rt.box.host.ask("tcp", "::1", port) or "").startswith("web ")
    assert "80/tcp -> [::1]:8081" in rt("ps").stdout + json.dumps(rt.inspect("web"))
    servers = x.serve("X", 7000)
    try:
        assert client.ask("tcp", MACHINE6, 7000) == f"X {HOST6}"  # masqueraded out over IPv6
    finally:
        servers.kill()
        servers.wait()
    rt("rm", "-f", "web", "client")
    assert rt.box.group_chains() == []
    key = ports.namespace_key(rt.box.host.path)
    assert [n for n in os.listdir(proxy6.DIR) if n.startswith(f"{key}-")] == []  # the [::1] proxy went with rm


def test_a_host_address_of_a_family_the_network_lacks_is_refused_early() -> None:
    from netkit.runtime import ports as publish_ports
    from netkit.runtime.state import ContainerError

    v4only, dual = ["10.88.0.0/16"], ["10.88.0.0/16", "fd00:88::/64"]
    for spec in ("[::1]:8080:80", "[fd00:30::1]:8080:80", "[::]:8080:80"):
        with pytest.raises(ContainerError, match="network web has no IPv6 subnet"):
            publish_ports.check_families(publish_ports.parse(spec), v4only, "web")
        publish_ports.check_families(publish_ports.parse(spec), dual, "web")
    publish_ports.check_families(publish_ports.parse("0.0.0.0:8080:80") + publish_ports.parse("8081:80"), v4only, "web")


def test_publishing_on_an_address_of_a_family_the_network_lacks_is_refused_before_anything_is_made(
        rt: Runtime) -> None:
    proc = rt("run", "-d", "--name", "v4only", "-p", "[::1]:8093:80", "--", "sleep", "300", check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "network bridge has no IPv6 subnet" in proc.stderr
    assert "v4only" not in rt("ps", "-a").stdout
