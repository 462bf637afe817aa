"""podman 4.3 drives the plugins end to end, with real traffic, in a sandbox host.

Every test runs twice: with netkit's plugins (netkit-bridge, netkit-ipam, netkit-portmap in the conflist
`podman network create` wrote) and, as the control, with Debian's reference plugins in the same
conflist.  Servers are busybox httpd in the containers, serving a page with the container's name;
clients are the sandbox host (urllib, inside the sandbox) and busybox wget inside containers.
"""

from __future__ import annotations

import ipaddress
import json
import os

from harness.agent import agent_processes
from netkit.agent import control
from tests import reach
from tests.e2e.podman import Network, poll

# A freshly started httpd, or a rule just written, is polled this long: a hang guard, not a bound
# (the poll ends at the first answer).
WAIT_S = 60


def _ip(addr: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(addr)


def _status(socket: str) -> dict[str, object] | None:
    try:
        return control.status(socket).status
    except control.NoAgent:
        return None


def test_a_plugin_exec_starts_the_one_agent_that_serves_the_next(pm: Network) -> None:
    """The default install with no agent set up: a plugin exec that finds none starts it, and the next
    container's plugins go through it (one agent, whatever the number of execs)."""
    pm.podman.sleeper("first", "--network", pm.name)
    if pm.variant != "netkit":
        assert pm.agent_socket == ""                   # the reference plugins: nothing to start
        return
    before = poll(lambda: _status(pm.agent_socket), WAIT_S)
    assert before is not None, "no agent answered after the first container's plugins ran"
    pm.podman.sleeper("second", "--network", pm.name)
    after = _status(pm.agent_socket)
    assert after is not None and after["pid"] == before["pid"]
    assert int(after["requests_served"]) > int(before["requests_served"])  # type: ignore[call-overload]
    assert [pid for pid, sock in agent_processes().items() if sock == pm.agent_socket] == [before["pid"]]


def test_conflist_is_podmans_with_the_plugin_types_replaced(pm: Network) -> None:
    written = pm.written
    assert written["cniVersion"] == "0.4.0"
    assert [p["type"] for p in written["plugins"]] == ["bridge", "portmap", "firewall", "tuning"]
    bridge = written["plugins"][0]
    assert bridge["isGateway"] and bridge["ipMasq"] and bridge["hairpinMode"]
    assert bridge["capabilities"] == {"ips": True}
    assert bridge["ipam"] == {"type": "host-local", "routes": [{"dst": "0.0.0.0/0"}],
                              "ranges": [[{"subnet": pm.subnet, "gateway": pm.gateway}]]}
    assert written["plugins"][1]["capabilities"] == {"portMappings": True}

    # What podman reads: its own conflist, leases in the suite's dir; for netkit the types replaced and
    # firewall/tuning dropped (netkit has no such plugins).
    want = json.loads(json.dumps(written))
    want["plugins"][0]["ipam"]["dataDir"] = pm.box.data_dir
    if pm.variant == "netkit":
        del want["plugins"][2:]
        want["plugins"][0]["type"], want["plugins"][0]["ipam"]["type"] = "netkit-bridge", "netkit-ipam"
        want["plugins"][1]["type"] = "netkit-portmap"
    with open(pm.conflist_path) as f:
        assert json.load(f) == pm.conflist == want
    assert pm.podman("network", "ls", "--format", "{{.Name}}").stdout.split() == ["nkpod", "podman"]


def test_published_port_answers_on_localhost_and_gateway(pm: Network) -> None:
    pm.podman.web("web", "--network", pm.name, "-p", "18080:80")
    assert pm.http("http://127.0.0.1:18080/", WAIT_S) == "web"
    assert pm.http(f"http://{pm.gateway}:18080/") == "web"
    addr = pm.podman.address("web")
    assert _ip(addr) in ipaddress.IPv4Network(pm.subnet)
    assert pm.http(f"http://{addr}/") == "web"
    assert pm.podman.addresses("web") == [f"{addr}/24"]
    assert pm.leases() == [addr]
    assert len(pm.veths()) == 1
    assert pm.rule_chains()                      # the DNAT and masquerade groups exist while it runs


def test_containers_reach_each_other_and_a_published_port_on_the_gateway(pm: Network) -> None:
    pm.podman.web("a", "--network", pm.name)
    pm.podman.web("b", "--network", pm.name, "-p", "18081:80")
    a, b = pm.podman.address("a"), pm.podman.address("b")
    assert a != b
    assert pm.http(f"http://{a}/", WAIT_S) == "a"
    assert pm.http(f"http://{b}/", WAIT_S) == "b"
    assert pm.podman.wget("a", f"http://{b}/") == "b"
    assert pm.podman.wget("b", f"http://{a}/") == "a"
    # a -> host's gateway address:18081 -> DNAT -> b (hairpin through the bridge)
    assert pm.podman.wget("a", f"http://{pm.gateway}:18081/") == "b"
    # and b reaches its own published port the same way (hairpinMode)
    assert pm.podman.wget("b", f"http://{pm.gateway}:18081/") == "b"


def test_static_ip(pm: Network) -> None:
    want = "10.89.0.50"
    pm.podman.web("fixed", "--network", pm.name, "--ip", want)
    assert pm.podman.address("fixed") == want
    assert pm.podman.addresses("fixed") == [f"{want}/24"]
    assert pm.http(f"http://{want}/", WAIT_S) == "fixed"
    assert pm.leases() == [want]


def test_host_network(pm: Network) -> None:
    pm.podman.web("bridged", "--network", pm.name)
    pm.podman.web("hostnet", "--network", "host", port=18082)
    # The container is in the sandbox host's namespace: same interfaces, its server on the host's localhost.
    assert pm.podman.links("hostnet") == sorted(pm.host.links())
    assert pm.bridge in pm.podman.links("hostnet")
    assert pm.http("http://127.0.0.1:18082/", WAIT_S) == "hostnet"
    bridged = pm.podman.address("bridged")
    assert pm.podman.wget("hostnet", f"http://{bridged}/") == "bridged"
    assert pm.podman.wget("bridged", f"http://{pm.gateway}:18082/") == "hostnet"
    assert len(pm.leases()) == 1                 # only the bridged container took an address


def test_none_network(pm: Network) -> None:
    pm.podman.web("web", "--network", pm.name)
    pm.podman.sleeper("peer", "--network", pm.name)
    pm.podman.sleeper("alone", "--network", "none")
    assert pm.podman.links("alone") == ["lo"]
    assert pm.podman.addresses("alone", "lo") == ["127.0.0.1/8"]
    url = f"http://{pm.podman.address('web')}/"
    # Control: the same wget of the same page works from a container on the network.
    assert reach.unanswered(lambda: pm.podman.wget("alone", url, tries=1), pm.podman.wget("peer", url),
                            f"wget {url} in a --network none container")
    assert len(pm.leases()) == 2 and len(pm.veths()) == 2   # web's and peer's: alone took none


def test_container_network(pm: Network) -> None:
    owner = pm.podman.web("owner", "--network", pm.name)
    pm.podman.sleeper("joiner", "--network", f"container:{owner}")
    addr = pm.podman.address("owner")
    assert pm.podman.links("joiner") == ["eth0", "lo"]
    assert pm.podman.addresses("joiner") == [f"{addr}/24"]
    assert pm.podman.wget("joiner", "http://127.0.0.1:80/") == "owner"
    assert pm.http(f"http://{addr}/", WAIT_S) == "owner"
    assert pm.leases() == [addr] and len(pm.veths()) == 1       # one attachment, shared
    pm.podman.rm("joiner")
    assert pm.http(f"http://{addr}/") == "owner"                # removing the joiner leaves the owner's network


def test_network_reload_keeps_the_published_port(pm: Network) -> None:
    pm.podman.web("web", "--network", pm.name, "-p", "18083:80")
    assert pm.http("http://127.0.0.1:18083/", WAIT_S) == "web"
    chains, veths = pm.rule_chains(), pm.veth_indexes()
    pm.podman("network", "reload", "web")            # CNI DEL, then ADD, for the running container
    assert pm.http("http://127.0.0.1:18083/", WAIT_S) == "web"
    assert pm.http(f"http://{pm.gateway}:18083/") == "web"
    addr = pm.podman.address("web")
    assert pm.podman.addresses("web") == [f"{addr}/24"]
    assert pm.http(f"http://{addr}/") == "web"
    assert pm.leases() == [addr]                     # the DEL released the old lease
    after = pm.veth_indexes()
    assert len(after) == 1 and set(after.values()) != set(veths.values())   # a new veth: DEL + ADD happened
    assert len(pm.rule_chains()) == len(chains)      # the DEL removed the old rules


def test_rm_leaves_no_veth_lease_or_rule(pm: Network) -> None:
    pm.podman.web("one", "--network", pm.name, "-p", "18084:80")
    pm.podman.web("two", "--network", pm.name, "--ip", "10.89.0.60", "-p", "18085:80")
    one = pm.http("http://127.0.0.1:18084/", WAIT_S)
    assert one == "one"
    assert pm.http("http://127.0.0.1:18085/", WAIT_S) == "two"
    assert len(pm.veths()) == 2 and len(pm.leases()) == 2 and pm.rule_chains()
    sandboxes = [pm.podman.inspect(c)["NetworkSettings"]["SandboxKey"] for c in ("one", "two")]
    assert all(os.path.exists(path) for path in sandboxes)
    pm.podman.rm("one", "two")
    assert not any(os.path.lexists(path) for path in sandboxes)   # podman removed the containers' namespaces
    assert pm.veths() == []
    assert pm.leases() == []
    assert pm.rule_chains() == []
    assert pm.no_http("http://127.0.0.1:18084/", control=one)  # control: the same port before the rm
    assert pm.podman("ps", "-aq").stdout.split() == []
