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


FRONT, BACK = "10.65.0", "10.66.0"


def _front_and_back(rt: Runtime) -> None:
    rt("network", "create", "--subnet", f"{FRONT}.0/24", "front")
    rt("network", "create", "--subnet", f"{BACK}.0/24", "back")


def _on(rt: Runtime, name: str, net: str) -> str:
    return rt.inspect(name)["NetworkSettings"]["Networks"][net]["IPAddress"]


def _dig(rt: Runtime, ctr: str, name: str, server: str) -> list[str]:
    """``dig +short`` from ``ctr``: the addresses answered (none when the name is unknown or unanswered)."""
    return rt("exec", ctr, "--", "dig", "+short", "+tries=1", "+time=1", f"@{server}", name, check=False).stdout.split()


def test_a_container_on_two_networks_resolves_the_names_of_both(rt: Runtime) -> None:
    """aardvark-dns's and Docker's rule: the names of every network the asking container is on, and only those."""
    _front_and_back(rt)
    rt("run", "-d", "--name", "api", "--network", "front", "--network", "back", "--", "sleep", "300")
    rt("run", "-d", "--name", "db", "--network", "back", "--", "sleep", "300")
    rt("run", "-d", "--name", "client", "--network", "front", "--", "sleep", "300")
    db, client = _on(rt, "db", "back"), _on(rt, "client", "front")
    assert _resolv(rt, "api") == f"nameserver {FRONT}.1\nnameserver {BACK}.1\nsearch dns.netkit\n"
    assert _getent(rt, "api", "db") == [db] and _getent(rt, "api", "client") == [client]
    # Whichever of its resolvers it asks.
    assert _dig(rt, "api", "db", f"{FRONT}.1") == [db] and _dig(rt, "api", "client", f"{BACK}.1") == [client]
    # The others see their own network only: api by its address there, the other side not at all.
    assert _getent(rt, "client", "api") == [_on(rt, "api", "front")]
    assert _getent(rt, "db", "api") == [_on(rt, "api", "back")]
    assert _getent(rt, "client", "db.dns.netkit") == [] and _getent(rt, "db", "client.dns.netkit") == []
    assert db not in _dig(rt, "client", "db", f"{FRONT}.1")  # a bare name goes upstream: never db's address
    assert client not in _dig(rt, "db", "client", f"{BACK}.1")


def test_a_shared_alias_gives_every_address_in_rotating_order_and_the_short_id_resolves(rt: Runtime) -> None:
    _front_and_back(rt)
    rt("run", "-d", "--name", "w1", "--network", "front", "--network-alias", "web", "--", "sleep", "300")
    rt("run", "-d", "--name", "w2", "--network", "name=front,alias=web", "--", "sleep", "300")
    rt("run", "-d", "--name", "w3", "--network", "name=back,alias=web", "--", "sleep", "300")
    rt("run", "-d", "--name", "client", "--network", "front", "--", "sleep", "300")
    rt("run", "-d", "--name", "both", "--network", "front", "--network", "back", "--", "sleep", "300")
    ws = {n: rt.ip(n) for n in ("w1", "w2", "w3")}
    answers = [_dig(rt, "client", "web.dns.netkit", f"{FRONT}.1") for _ in range(3)]
    assert all(sorted(a) == sorted([ws["w1"], ws["w2"]]) for a in answers), answers
    assert len({a[0] for a in answers}) == 2, answers
    assert _getent(rt, "client", "web") == sorted([ws["w1"], ws["w2"]])
    # On both networks: the alias's every address of both.
    answers = [_dig(rt, "both", "web", f"{BACK}.1") for _ in range(3)]
    assert all(sorted(a) == sorted(ws.values()) for a in answers) and len({a[0] for a in answers}) == 3, answers
    # Docker's short ID (multinet passes it as an alias), on each of the container's networks.
    short = rt.inspect("both")["Id"][:12]
    assert _getent(rt, "client", short) == [_on(rt, "both", "front")]
    assert _getent(rt, "w3", short) == [_on(rt, "both", "back")]
    assert _getent(rt, "both", rt.inspect("w1")["Id"][:12]) == [ws["w1"]]


def test_connect_and_disconnect_change_names_at_once_without_a_restart(rt: Runtime) -> None:
    _front_and_back(rt)
    rt("network", "create", "--subnet", "10.67.0.0/24", "--disable-dns", "quiet")
    rt("run", "-d", "--name", "db", "--network", "back", "--", "sleep", "300")
    rt("run", "-d", "--name", "client", "--network", "front", "--", "sleep", "300")
    db = rt.ip("db")
    assert _getent(rt, "client", "db.dns.netkit") == []
    rt("network", "connect", "--alias", "cache", "back", "client")
    client_back = _on(rt, "client", "back")
    assert _getent(rt, "client", "db") == [db]                      # the new network's names, at once
    assert _getent(rt, "db", "cache") == [client_back] and _getent(rt, "db", "client") == [client_back]
    assert _resolv(rt, "client") == f"nameserver {FRONT}.1\nnameserver {BACK}.1\nsearch dns.netkit\n"
    rt("network", "disconnect", "back", "client")
    assert _getent(rt, "db", "client.dns.netkit") == [] and _getent(rt, "db", "cache.dns.netkit") == []
    assert _getent(rt, "client", "db.dns.netkit") == []
    assert _resolv(rt, "client") == f"nameserver {FRONT}.1\nsearch dns.netkit\n"
    # Its first DNS network left: the next one's resolver, in the running container's resolv.conf.
    rt("network", "connect", "back", "client")
    rt("network", "disconnect", "front", "client")
    assert _resolv(rt, "client") == f"nameserver {BACK}.1\nsearch dns.netkit\n"
    assert _getent(rt, "client", "db") == [db]
    # A container with no resolver at start (a network without DNS, its own --dns): connected to a DNS
    # network, it asks that network's resolver, which forwards its other names to its --dns server.
    rt("run", "-d", "--name", "loner", "--network", "quiet", "--dns", "192.0.2.53", "--", "sleep", "300")
    assert _resolv(rt, "loner") == "nameserver 192.0.2.53\n"
    rt("network", "connect", "back", "loner")
    assert _resolv(rt, "loner") == f"nameserver {BACK}.1\nsearch dns.netkit\n"
    assert _getent(rt, "loner", "db") == [db] and _getent(rt, "db", "loner") == [_on(rt, "loner", "back")]
    rt("network", "disconnect", "back", "loner")
    assert _resolv(rt, "loner") == "nameserver 192.0.2.53\n"
    # Started on the default bridge (no resolver, the host's settings), then connected.
    rt("run", "-d", "--name", "plain", "--", "sleep", "300")
    assert "dns.netkit" not in _resolv(rt, "plain")
    rt("network", "connect", "back", "plain")
    assert _resolv(rt, "plain").startswith(f"nameserver {BACK}.1\nsearch dns.netkit")
    assert _getent(rt, "plain", "db") == [db]


def test_a_joiner_resolves_with_its_owners_files_and_follows_its_connects(rt: Runtime) -> None:
    rt("network", "create", "--subnet", "10.58.0.0/24", "apps")
    rt("network", "create", "--subnet", "10.60.0.0/24", "more")
    rt("run", "-d", "--name", "db", "--net", "apps", "--", "sleep", "300")
    rt("run", "-d", "--name", "cache", "--net", "more", "--", "sleep", "300")
    rt("run", "-d", "--name", "web", "--net", "apps", "--", "sleep", "300")
    rt("run", "-d", "--name", "side", "--net", "container:web", "--", "sleep", "300")
    rt("run", "-d", "--name", "side2", "--net", "container:side", "--", "sleep", "300")  # a joiner's joiner
    for joiner in ("side", "side2"):
        assert _resolv(rt, joiner) == _resolv(rt, "web") == "nameserver 10.58.0.1\nsearch dns.netkit\n"
        assert _getent(rt, joiner, "db") == [rt.ip("db")]
        assert _getent(rt, joiner, "web") == [rt.ip("web")]  # the owner's hosts file names it too
    # The owner's connect rewrites the files the joiner has bound: it resolves the new network's names.
    rt("network", "connect", "more", "web")
    assert _getent(rt, "side", "cache") == [rt.ip("cache")]
    rt("rm", "-f", "side2", "side", "web", "db", "cache")
    rt("network", "rm", "apps")
    rt("network", "rm", "more")
