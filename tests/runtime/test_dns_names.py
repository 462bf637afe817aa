"""`netkit run` on a user network resolves its containers by name; the default bridge does not (Docker's rule).

Real queries through the C library's resolver (getent, which reads the container's resolv.conf) and
dig from inside the containers.
"""

from __future__ import annotations

import json
import os

from tests.runtime.conftest import Runtime, second_runtime_sharing


def _resolv(rt: Runtime, name: str) -> str:
    return rt("exec", name, "--", "cat", "/etc/resolv.conf").stdout


def _getent(rt: Runtime, ctr: str, name: str) -> list[str]:
    proc = rt("exec", ctr, "--", "getent", "ahostsv4", name, check=False)
    return sorted({line.split()[0] for line in proc.stdout.splitlines()}) if proc.returncode == 0 else []


def test_user_network_resolves_names_the_default_bridge_does_not(rt: Runtime) -> None:
    rt("network", "create", "--subnet", "10.56.0.0/24", "apps")
    conf = json.loads(open(os.path.join(rt.root, "networks", "apps.conflist")).read())
    assert [p["type"] for p in conf["plugins"]] == ["netkit-bridge", "netkit-dns"]
    for name in ("web", "client"):
        rt("run", "-d", "--name", name, "--net", "apps", "--", "sleep", "300")
    rt("run", "-d", "--name", "plain", "--", "sleep", "300")
    assert _resolv(rt, "client") == "nameserver 10.56.0.1\nsearch dns.netkit\n"
    assert _getent(rt, "client", "web") == [rt.ip("web")]               # the short name, through search
    assert _getent(rt, "client", "web.dns.netkit") == [rt.ip("web")]
    dig = rt("exec", "client", "--", "dig", "+short", "+search", "client").stdout.split()
    assert dig == [rt.ip("client")]
    # The default bridge: no resolver in its conflist, the container's resolv.conf is not the gateway's.
    bridge = json.loads(open(os.path.join(rt.root, "networks", "bridge.conflist")).read())
    assert [p["type"] for p in bridge["plugins"]] == ["netkit-bridge"]
    assert "dns.netkit" not in rt("exec", "plain", "--", "cat", "/etc/resolv.conf", check=False).stdout
    # A removed container's name is gone at once; the last one's removal stops the daemon.
    rt("rm", "-f", "web")
    assert _getent(rt, "client", "web.dns.netkit") == []
    rt("rm", "-f", "client", "plain")
    rt("network", "rm", "apps")
    assert [f for f in os.listdir(os.path.join(rt.root, "dns")) if not f.startswith(".")] == []


def test_disable_dns_network_has_no_resolver_and_an_internal_one_forwards_nothing(rt: Runtime) -> None:
    rt("network", "create", "--subnet", "10.57.0.0/24", "--disable-dns", "quiet")
    conf = json.loads(open(os.path.join(rt.root, "networks", "quiet.conflist")).read())
    assert [p["type"] for p in conf["plugins"]] == ["netkit-bridge"]
    rt("network", "create", "--subnet", "10.59.0.0/24", "--internal", "inner")
    conf = json.loads(open(os.path.join(rt.root, "networks", "inner.conflist")).read())
    assert conf["plugins"][1]["type"] == "netkit-dns" and conf["plugins"][1]["upstreams"] == []
    rt("run", "-d", "--name", "a", "--net", "inner", "--", "sleep", "300")
    assert _getent(rt, "a", "a") == [rt.ip("a")]
    refused = rt("exec", "a", "--", "dig", "example.org", check=False).stdout
    assert "status: REFUSED" in refused


def test_two_runtimes_sharing_a_network_share_its_resolver(rt: Runtime) -> None:
    with second_runtime_sharing(rt, "10.58.0.0/24") as (other, _):
        rt("run", "-d", "--name", "one", "--net", "shared", "--", "sleep", "300")
        other("run", "-d", "--name", "two", "--net", "shared", "--", "sleep", "300")
        assert _getent(rt, "one", "two") == [other.ip("two")]
        assert _getent(other, "two", "one") == [rt.ip("one")]


def test_dns_flag_on_a_user_network_keeps_the_resolver_which_forwards_to_it(rt: Runtime) -> None:
    """Docker's rule: with --dns on a user network the container still asks the network's resolver
    (its names resolve), and the resolver forwards its other names to the servers given."""
    rt("network", "create", "--subnet", "10.60.0.0/24", "flagged")
    rt("run", "-d", "--name", "peer", "--net", "flagged", "--", "sleep", "300")
    rt("run", "-d", "--name", "asker", "--net", "flagged", "--dns", "192.0.2.53", "--", "sleep", "300")
    assert _resolv(rt, "asker") == "nameserver 10.60.0.1\nsearch dns.netkit\n"
    assert _getent(rt, "asker", "peer") == [rt.ip("peer")]
    with open(os.path.join(rt.root, "dns", "flagged.json")) as f:
        entries = {e["names"][0]: e for e in json.load(f)["entries"]}
    assert entries["asker"]["upstreams"] == ["192.0.2.53"] and entries["peer"]["upstreams"] == []
    # The default bridge has no resolver: there --dns is the container's nameserver, as before.
    rt("run", "-d", "--name", "plain", "--dns", "192.0.2.53", "--", "sleep", "300")
    assert _resolv(rt, "plain") == "nameserver 192.0.2.53\n"
