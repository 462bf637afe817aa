"""netkit-dns chained after netkit-bridge: real queries (dig) from inside container namespaces.

Every test runs with the plugins in-process and through the warm agent (the ``box`` fixture); the
daemon a test starts is stopped with it (tests/dns/helpers.py).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from dnslib import DNSRecord

from harness.agent import agent_processes
from netkit.dns import control, records
from netkit.net import netns
from tests.dns.helpers import DOMAIN, GATEWAY, WIRE, Dns, upstream
from tests.sandbox import bridge_conf


def test_names_and_aliases_resolve_bare_and_in_the_domain_over_udp_and_tcp(dns: Dns) -> None:
    web = dns.attach("web", ["api", "Frontend"])
    cli = dns.attach("client")
    for name in ("web", f"web.{DOMAIN}", "api", f"api.{DOMAIN}", f"FRONTEND.{DOMAIN}"):
        assert dns.dig(cli.ns, name) == [web.ip], name
        assert dns.dig(cli.ns, name, "A", GATEWAY, "+tcp") == [web.ip], name
    assert dns.dig(web.ns, f"client.{DOMAIN}") == [cli.ip]
    assert dns.dig(cli.ns, f"web.{DOMAIN}", "AAAA") == []      # a name without v6: no data, no error
    assert dns.dig(cli.ns, f"web.{DOMAIN}", "MX") == []
    assert dns.dig(cli.ns, f"nobody.{DOMAIN}") == ["status: NXDOMAIN"]
    assert dns.dig(cli.ns, "-x", web.ip) == [f"web.{DOMAIN}."]  # reverse lookup of a container
    assert dns.box.call("netkit-dns", "CHECK", dns.conf(web.prev, {"testnet": ["api", "Frontend"]}), web.ns,
                        args="IgnoreUnknown=1;K8S_POD_NAME=web") == (0, None)


def test_result_names_the_gateway_and_the_domain(dns: Dns) -> None:
    web = dns.attach("web")
    assert web.result["dns"] == {"nameservers": [GATEWAY], "search": [DOMAIN]}
    assert web.result["ips"] == web.prev["ips"] and web.result["interfaces"] == web.prev["interfaces"]


def test_an_alias_of_several_containers_gives_every_address_in_rotating_order(dns: Dns) -> None:
    replicas = [dns.attach(f"api{i}", ["api"]) for i in range(3)]
    cli = dns.attach("client")
    want = sorted(r.ip for r in replicas)
    orders = [dns.dig(cli.ns, f"api.{DOMAIN}") for _ in range(4)]
    assert all(sorted(o) == want for o in orders), orders
    assert len({o[0] for o in orders[:3]}) == 3, orders      # each of three answers starts elsewhere
    dns.detach(replicas[0])
    assert sorted(dns.dig(cli.ns, "api")) == sorted(r.ip for r in replicas[1:])


def test_del_removes_the_names_at_once_and_the_last_one_stops_the_daemon(dns: Dns) -> None:
    web = dns.attach("web", ["www"])
    cli = dns.attach("client")
    assert dns.dig(cli.ns, "www") == [web.ip]
    dns.detach(web)
    dns.detach(web)  # DEL is idempotent
    assert dns.dig(cli.ns, f"www.{DOMAIN}") == ["status: NXDOMAIN"]
    assert dns.box.call("netkit-dns", "CHECK", dns.conf(web.prev, {"testnet": ["www"]}), web.ns,
                        args="IgnoreUnknown=1;K8S_POD_NAME=web")[1]["code"] == 106
    assert dns.daemon_status() is not None
    dns.detach(cli)
    assert dns.daemon_status() is None
    assert not os.path.exists(records.path(dns.data_dir, "testnet"))


def test_a_restarted_container_gets_its_new_address(dns: Dns) -> None:
    cli = dns.attach("client")
    first = dns.attach("db", subnet="10.20.0.0/24")
    dns.detach(first)
    assert dns.box.call("netkit-bridge", "DEL", dict(bridge_conf(dns.box), prevResult=first.prev), first.ns)[0] == 0
    again = dns.attach("db", ns=first.ns)
    assert dns.dig(cli.ns, "db") == [again.ip]


def test_names_of_another_network_do_not_resolve(dns: Dns) -> None:
    a = dns.attach("alpha")
    b = dns.attach("beta", network="other", subnet="10.21.0.0/24", bridge="nkbr1")
    assert dns.dig(a.ns, "alpha") == [a.ip]
    assert dns.dig(b.ns, "beta", "A", "10.21.0.1") == [b.ip]
    assert dns.dig(a.ns, f"beta.{DOMAIN}") == ["status: NXDOMAIN"]
    assert dns.dig(b.ns, f"alpha.{DOMAIN}", "A", "10.21.0.1") == ["status: NXDOMAIN"]
    # The other network's resolver refuses a client that is not on that network (here a machine on an
    # uplink, routed to it: the networks' isolation keeps alpha from reaching it at all).
    x = dns.box.machine(["10.30.0.1"], "10.30.0.2")
    x.run("ip", "route", "add", "10.21.0.0/24", "via", "10.30.0.1", check=True)
    assert dns.dig(x, f"beta.{DOMAIN}", "A", "10.21.0.1") == ["status: REFUSED"]


def test_other_names_are_forwarded_to_the_upstreams_over_udp_and_tcp(dns: Dns, servers: list) -> None:
    servers.append(upstream(dns.box.host, "127.0.0.1", 5353))
    up = ["127.0.0.1:5353"]
    a = dns.attach("alpha", upstreams=up)
    assert dns.dig(a.ns, "example.org") == ["192.0.2.7"]
    assert dns.dig(a.ns, "example.org", "A", GATEWAY, "+tcp") == ["192.0.2.7"]
    assert dns.dig(a.ns, "alpha") == [a.ip]                     # local names still answered locally
    assert dns.dig(a.ns, f"nope.{DOMAIN}") == ["status: NXDOMAIN"]  # the network's domain is never forwarded


def test_a_containers_own_servers_get_its_other_names(dns: Dns, servers: list) -> None:
    """Capability ``dns`` (Docker's --dns on a user network): the resolver forwards that container's
    other names to its own servers; another container of the network gets the network's upstreams."""
    servers.append(upstream(dns.box.host, "127.0.0.1", 5354))
    servers.append(upstream(dns.box.host, "127.0.0.1", 5355, "answer=192.0.2.8"))
    network_ups = ["127.0.0.1:5355"]
    own = dns.attach("own", upstreams=network_ups,
                     runtimeConfig={"aliases": {}, "dns": {"servers": ["127.0.0.1:5354"]}})
    plain = dns.attach("plain", upstreams=network_ups)
    assert dns.dig(own.ns, "example.org") == ["192.0.2.7"]
    assert dns.dig(own.ns, "example.org", "A", GATEWAY, "+tcp") == ["192.0.2.7"]
    assert dns.dig(plain.ns, "example.org") == ["192.0.2.8"]
    assert dns.dig(own.ns, "plain") == [plain.ip]
    rc, out = dns.box.call("netkit-dns", "ADD", dns.conf(plain.prev, runtimeConfig={"dns": {"servers": ["x"]}}),
                           plain.ns)
    assert rc == 1 and out["code"] == 7


def test_an_internal_network_forwards_nothing_even_to_a_containers_own_servers(dns: Dns, servers: list) -> None:
    """``upstreams: []`` (what `netkit network create --internal` writes): no way out by DNS either."""
    servers.append(upstream(dns.box.host, "127.0.0.1", 5354))
    own = dns.attach("own", runtimeConfig={"aliases": {}, "dns": {"servers": ["127.0.0.1:5354"]}})
    assert dns.dig(own.ns, "example.org") == ["status: REFUSED"]
    assert dns.dig(own.ns, "example.org", "A", GATEWAY, "+tcp") == ["status: REFUSED"]
    assert dns.dig(own.ns, "own") == [own.ip]


@pytest.mark.parametrize("how", ["stop", "SIGTERM"])
def test_a_stopping_daemon_frees_the_gateways_before_it_answers_or_exits(dns: Dns, servers: list,
                                                                         how: str) -> None:
    """With a query still upstream (its worker waits on a silent server), the gateway's port 53 is free as
    soon as ``stop`` answers (SIGTERM: while the daemon still waits for that worker), so a new daemon binds."""
    servers.append(upstream(dns.box.host, "127.0.0.1", 5353, "silent"))
    web = dns.attach("web", upstreams=["127.0.0.1:5353"])
    status = dns.daemon_status() or ""
    pid, served = int(status.split("pid=")[1].split()[0]), int(status.split("served=")[1].split()[0])
    asking = subprocess.Popen([*web.ns.enter(), sys.executable, WIRE, "ask", "udp", GATEWAY, "53",
                               DNSRecord.question("example.org").pack().hex()], stdout=subprocess.DEVNULL)
    while int((dns.daemon_status() or "served=0").split("served=")[1].split()[0]) == served:
        pass  # until the daemon took the query (it is upstream now)
    freed = False
    with netns.entered(dns.box.host.path):
        if how == "stop":
            assert control.stop(dns.data_dir)
            freed = _binds(GATEWAY)
        else:
            os.kill(pid, signal.SIGTERM)
            while not freed and _running(pid):
                freed = _binds(GATEWAY)
    asking.wait()
    assert freed


def _running(pid: int) -> bool:
    """Whether process ``pid`` has not exited yet (a zombie has: its sockets are closed)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _binds(addr: str) -> bool:
    """Whether UDP port 53 of ``addr`` is free (bound and let go at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((addr, 53))
        except OSError:
            return False
    return True


def test_v6_addresses_answer_aaaa_and_the_resolver_listens_on_the_v6_gateway(dns: Dns) -> None:
    cli = dns.attach("client")
    # A v6 address on the bridge and in the container (NODAD: usable at once), added to the prevResult
    # netkit-dns gets, as a dual-stack bridge reports it.
    c = dns.box.container()
    rc, prev = dns.box.call("netkit-bridge", "ADD", bridge_conf(dns.box), c, args="K8S_POD_NAME=six")
    assert rc == 0, prev
    dns.box.host.run("ip", "-6", "addr", "add", "fd20::1/64", "dev", "nkbr0", "nodad", check=True)
    c.run("ip", "-6", "addr", "add", "fd20::5/64", "dev", "eth0", "nodad", check=True)
    prev["ips"].append({"address": "fd20::5/64", "gateway": "fd20::1", "interface": prev["ips"][0]["interface"]})
    rc, out = dns.box.call("netkit-dns", "ADD", dns.conf(prev), c, args="K8S_POD_NAME=six")
    assert rc == 0, out
    assert out["dns"]["nameservers"] == [GATEWAY, "fd20::1"]
    v4 = prev["ips"][0]["address"].split("/")[0]
    assert dns.dig(cli.ns, "six", "AAAA") == ["fd20::5"]
    assert dns.dig(cli.ns, "six", "A") == [v4]
    assert dns.dig(c, "six", "AAAA", "fd20::1") == ["fd20::5"]   # asked over IPv6
    assert dns.dig(c, "client", "A", "fd20::1", "+tcp") == [cli.ip]


def test_records_file_is_json_of_the_attachments(dns: Dns) -> None:
    web = dns.attach("web", ["www"])
    with open(records.path(dns.data_dir, "testnet"), encoding="utf-8") as f:
        doc = json.load(f)
    assert doc["domain"] == DOMAIN and doc["gateways"] == [GATEWAY] and doc["subnets"] == ["10.20.0.0/24"]
    assert doc["entries"] == [{"container_id": web.ns.name, "ifname": "eth0", "names": ["web", "www"],
                               "addresses": [web.prev["ips"][0]["address"]], "upstreams": []}]


def test_gc_drops_the_records_of_attachments_not_valid(dns: Dns) -> None:
    keep, _ = dns.attach("keep"), dns.attach("gone")
    conf = dns.conf(None, **{"cniVersion": "1.1.0",
                             "cni.dev/valid-attachments": [{"containerID": keep.ns.name, "ifname": "eth0"}]})
    assert dns.box.call("netkit-dns", "GC", conf) == (0, None)
    assert dns.dig(keep.ns, "gone") == ["status: REFUSED"]  # a bare name not ours, and no upstream to ask
    assert dns.dig(keep.ns, f"gone.{DOMAIN}") == ["status: NXDOMAIN"]
    assert dns.dig(keep.ns, "keep") == [keep.ip]
    assert dns.box.call("netkit-dns", "STATUS", dns.conf(None, cniVersion="1.1.0")) == (0, None)


def test_bad_configs_are_refused_with_code_7(dns: Dns) -> None:
    c = dns.box.container()
    rc, prev = dns.box.call("netkit-bridge", "ADD", bridge_conf(dns.box), c)
    assert rc == 0
    for bad in ({"runtimeConfig": {"aliases": {"testnet": "notalist"}}},
                {"runtimeConfig": {"aliases": {"testnet": ["bad name!"]}}},
                {"domainName": ""}, {"dataDir": "relative"}, {"upstreams": ["not-an-address"]}):
        rc, out = dns.box.call("netkit-dns", "ADD", {**dns.conf(prev), **bad}, c)
        assert rc == 1 and out["code"] == 7, (bad, out)
    rc, out = dns.box.call("netkit-dns", "ADD", dns.conf(None), c)
    assert rc == 1 and out["code"] == 7 and "prevResult" in out["msg"]
    assert dns.daemon_status() is None  # nothing was recorded: nothing to serve
    # A container name DNS cannot spell is left out (its start must not fail over it); its aliases stay.
    rc, out = dns.box.call("netkit-dns", "ADD", dns.conf(prev, {"testnet": ["ok-alias"]}), c, args="K8S_POD_NAME=a.-b")
    assert rc == 0, out
    assert dns.dig(c, "ok-alias") == [prev["ips"][0]["address"].split("/")[0]]
    dns.box.call("netkit-dns", "DEL", dns.conf(prev), c)
    assert dns.daemon_status() is None  # the last DEL stopped it


def test_port_53_taken_on_the_gateway_fails_add_and_records_nothing(dns: Dns, servers: list) -> None:
    c = dns.box.container()
    rc, prev = dns.box.call("netkit-bridge", "ADD", bridge_conf(dns.box), c, args="K8S_POD_NAME=web")
    assert rc == 0, prev
    servers.append(upstream(dns.box.host, GATEWAY, 53, "silent"))  # another server owns port 53 there
    rc, out = dns.box.call("netkit-dns", "ADD", dns.conf(prev), c, args="K8S_POD_NAME=web")
    assert rc == 1 and out["code"] == 104 and GATEWAY in out["details"], out
    assert not os.path.exists(records.path(dns.data_dir, "testnet"))
    assert dns.daemon_status() is None


def test_the_daemon_is_nobodys_child_so_it_outlives_an_agent(dns: Dns) -> None:
    """Started by a plugin in-process or in the agent, the daemon lives apart: no agent is its parent or
    shares its session, so stopping or replacing the agent (an upgrade) leaves names resolving."""
    web = dns.attach("web")
    status = dns.daemon_status() or ""
    pid = int(status.split("pid=")[1].split()[0])
    with open(f"/proc/{pid}/stat") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    agents = agent_processes()
    assert ppid not in agents and os.getsid(pid) not in {os.getsid(a) for a in agents}
    assert dns.dig(web.ns, "web") == [web.ip]


def _daemons(data_dir: str) -> list[int]:
    """PIDs of resolver daemons serving ``data_dir``."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"netkit.dns" in argv and data_dir.encode() in argv:
            out.append(int(pid))
    return out


def test_concurrent_adds_start_one_daemon_and_every_name_resolves(dns: Dns) -> None:
    with ThreadPoolExecutor(8) as pool:
        attached = list(pool.map(lambda i: dns.attach(f"n{i}", ["all"]), range(8)))
    assert len(_daemons(dns.data_dir)) == 1
    for a in attached:
        assert dns.dig(attached[0].ns, a.names[0]) == [a.ip]
    assert sorted(dns.dig(attached[0].ns, "all")) == sorted(a.ip for a in attached)


def test_a_daemon_that_died_is_started_again_by_the_next_change(dns: Dns) -> None:
    web = dns.attach("web")
    (pid,) = _daemons(dns.data_dir)
    os.kill(pid, signal.SIGKILL)
    while _running(pid):
        pass  # a daemon still dying takes the CHECK's connection, then drops it: code 11, not 106
    assert dns.box.call("netkit-dns", "CHECK", dns.conf(web.prev), web.ns,
                        args="IgnoreUnknown=1;K8S_POD_NAME=web")[1]["code"] == 106
    db = dns.attach("db")
    assert dns.dig(db.ns, "web") == [web.ip] and dns.dig(web.ns, "db") == [db.ip]
