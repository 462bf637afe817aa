"""Scenario files: validation with errors that point at the file and line, and the addresses decided."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from netkit.lab import scenario
from netkit.lab.scenario import ScenarioError
from tests.lab.conftest import SHIPPED
from tests.lab.conftest import scenario as shipped_path

GOOD = """\
name: demo
links:
  wire: {subnet: 10.9.0.0/24}
  seg: {}
hosts:
  a:
    links: {wire: 10.9.0.5, seg: null}
    networks:
      front: {subnet: 10.40.0.0/24}
    routes:
      - {to: 10.41.0.0/24, via: b}
    containers:
      web: {net: front, ports: ["8080:80"], serve: {http: 80}}
      side: {net: "container:web", cmd: "sleep infinity"}
  b:
    links: [wire, seg]
  c:
    links: [seg]
checks:
  - {from: a/web, to: "b:80"}
  - {from: c, to: b, proto: icmp, expect: blocked}
"""


def _error(text: str) -> str:
    with pytest.raises(ScenarioError) as info:
        scenario.parse(textwrap.dedent(text), "lab.yaml")
    return info.value.msg


def test_valid_scenario_gets_deterministic_addresses_link_kinds_and_start_order() -> None:
    sc = scenario.parse(GOOD, "lab.yaml")
    assert str(sc.hosts["a"].addresses["wire"]) == "10.9.0.5/24"
    assert str(sc.hosts["b"].addresses["wire"]) == "10.9.0.10/24"  # automatic: from .10, skipping taken ones
    assert str(sc.links["seg"].subnet) == "10.250.0.0/24"  # no subnet: the automatic pool
    assert sc.links["wire"].kind == "veth" and sc.links["seg"].kind == "segment"
    assert sc.links["seg"].members == ["a", "b", "c"]
    assert sc.hosts["a"].routes[0].via == "10.9.0.10"  # via a host: its address on the shared link
    assert [c.name for c in sc.container_order(sc.hosts["a"])] == ["web", "side"]
    assert sc.hosts["a"].containers["side"].cmd == ["sleep", "infinity"]
    assert scenario.parse(GOOD, "lab.yaml").hosts["c"].addresses == sc.hosts["c"].addresses


DUAL = """\
links:
  lan: {subnet: 10.9.0.0/24, ipv6: "fd00:9::/64"}
hosts:
  a:
    links: {lan: 10.9.0.5}
    networks:
      front: {subnet: 10.40.0.0/24, ipv6: "fd00:40::/64"}
      back: {ipv6: true}
    routes:
      - {to: "fd00:41::/64", via: b}
      - {to: 10.41.0.0/24, via: b}
    containers:
      api: {net: [front, back], aliases: [svc], serve: {http: 80, proxy: 81, backends: ["db:80"]}}
      db: {net: back, serve: {http: 80}}
  b:
    links: [lan]
checks:
  - {from: a/api, to: db, proto: dns}
  - {from: a/api, to: "db:80", resolve: true, proto: http, family: 6}
  - {from: b, to: "[fd00:9::5]:80"}
  - {from: b, to: "a:80", family: 6}
"""


def test_dual_stack_links_networks_and_routes_get_v6_addresses_from_the_v4_host_numbers() -> None:
    sc = scenario.parse(DUAL, "lab.yaml")
    assert str(sc.hosts["a"].addresses6["lan"]) == "fd00:9::5/64"
    assert str(sc.hosts["b"].addresses6["lan"]) == "fd00:9::a/64"  # .10 -> ::a
    assert sc.hosts["a"].routes[0].via == "fd00:9::a" and sc.hosts["a"].routes[1].via == "10.9.0.10"
    assert sc.address_of("b", "a", family=6) == "fd00:9::a"
    assert sc.hosts["a"].networks["front"].ipv6 == "fd00:40::/64"
    assert sc.hosts["a"].networks["back"].ipv6 == "auto" and sc.hosts["a"].networks["back"].subnet is None
    api = sc.hosts["a"].containers["api"]
    assert api.nets == ["front", "back"] and api.net == "front" and api.aliases == ["svc"]
    dns, http, literal, v6 = sc.checks
    assert dns.resolve and dns.proto == "dns" and http.resolve and http.family == 6
    assert scenario.split_target(literal.to) == ("fd00:9::5", "80") and v6.family == 6


@pytest.mark.parametrize("text, where, words", [
    ("links:\n  w: {ipv6: 10.0.0.0/24}\nhosts:\n  a: {links: [w]}\n", "lab.yaml:2:", "must be an IPv6 subnet"),
    ("hosts:\n  a:\n    networks: {n: {}}\n    containers:\n      c: {net: [n, host], cmd: [x]}\n",
     "lab.yaml:5:", "host is a network mode"),
    ("hosts:\n  a:\n    networks: {n: {}}\n    containers:\n      c: {net: [n, n], cmd: [x]}\n",
     "lab.yaml:5:", "given twice"),
    ("hosts:\n  a:\n    containers:\n      c: {aliases: [x], cmd: [x]}\n", "lab.yaml:4:", "user-defined networks"),
    ("hosts:\n  a:\n    links: [w]\n    routes:\n      - {to: 'fd00::/64', via: b}\n  b: {links: [w]}\n",
     "lab.yaml:5:", "no dual-stack link"),
    ("hosts:\n  a: {}\nchecks:\n  - {from: a, to: db, proto: dns}\n", "lab.yaml:4:", "from: HOST/CONTAINER"),
    ("hosts:\n  a:\n    containers: {c: {cmd: [x]}}\nchecks:\n  - {from: a/c, to: 'db:53', proto: dns}\n",
     "lab.yaml:5:", "no port"),
    ("hosts:\n  a: {}\nchecks:\n  - {from: a, to: 'a:80', family: 5}\n", "lab.yaml:4:", "4 or 6"),
])
def test_invalid_v6_multi_network_and_name_checks_are_refused_at_their_line(text: str, where: str,
                                                                            words: str) -> None:
    msg = _error(text)
    assert msg.startswith(where), msg
    assert words in msg, msg


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenario_is_valid_and_has_checks(name: str) -> None:
    sc = scenario.load(shipped_path(name))
    assert sc.name == name and sc.checks


@pytest.mark.parametrize("text, where, words", [
    ("hosts:\n  a:\n    links: [w]\n  b: {links: [w]}\nlinkz: {}\n", "lab.yaml:5:", "unknown key"),
    ("hosts:\n  a:\n    containers:\n      c:\n        net: nowhere\n        cmd: [true]\n", "lab.yaml:5:",
     "unknown network 'nowhere'"),
    ("links:\n  w: {subnet: 10.0.0.0/24}\nhosts:\n  a:\n    links: {w: 10.0.1.1}\n", "lab.yaml:5:",
     "not a host address of link w"),
    ("hosts:\n  a: {links: {w: 10.250.0.9}}\n  b: {links: {w: 10.250.0.9}}\n", "lab.yaml:3:", "used twice"),
    ("hosts:\n  a:\n    links: [w]\n    routes:\n      - {to: 10.1.0.0/24, via: b}\n  b: {links: [v]}\n",
     "lab.yaml:5:", "shares no link"),
    ("hosts:\n  a: {}\nchecks:\n  - {from: a, to: 'a/web:80'}\n", "lab.yaml:4:", "no container 'web'"),
    ("hosts:\n  a: {}\nchecks:\n  - {from: a, to: 10.0.0.1}\n", "lab.yaml:4:", "needs a port"),
    ("hosts:\n  a:\n    containers:\n      c: {cmd: [x], serve: {tcp: 1}}\n", "lab.yaml:4:", "exactly one of cmd"),
    ("hosts:\n  a:\n    containers:\n      c:\n        ports: ['99999:80']\n        cmd: [x]\n",
     "lab.yaml:5:", "port"),
    ("hosts:\n  Bad_Name: {}\n", "lab.yaml:2:", "not a valid name"),
    ("hosts:\n  a: {}\n\tbad: tab\n", "lab.yaml:3:", "invalid YAML"),
    ("name: x\n", "lab.yaml:1:", "at least one host"),
])
def test_invalid_scenario_is_refused_with_file_line_and_reason(text: str, where: str, words: str) -> None:
    msg = _error(text)
    assert msg.startswith(where), msg
    assert words in msg, msg


def test_links_past_the_automatic_pool_are_refused_with_the_link_named() -> None:
    """256 links without a subnet fill 10.250.0.0/16's /24s; the 257th is a scenario error, not a crash."""
    links = "".join(f"  l{i}: {{}}\n" for i in range(257))
    members = ", ".join(f"l{i}" for i in range(257))
    msg = _error(f"links:\n{links}hosts:\n  a:\n    links: [{members}]\n")
    assert msg.startswith("lab.yaml:258: links.l256:"), msg
    assert "give it a subnet" in msg, msg


def test_cli_reports_a_bad_scenario_in_one_line_without_traceback(tmp_path: os.PathLike[str]) -> None:
    bad = f"{tmp_path}/bad.yaml"
    with open(bad, "w", encoding="utf-8") as f:
        f.write("hosts:\n  a:\n    containers:\n      c: {net: nowhere, cmd: [x]}\n")
    proc = subprocess.run([sys.executable, "-m", "netkit", "lab", "validate", bad], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and f"{bad}:4:" in proc.stderr and "Traceback" not in proc.stderr
    missing = subprocess.run([sys.executable, "-m", "netkit", "lab", "graph", f"{tmp_path}/none.yaml"],
                             capture_output=True, text=True)
    assert missing.returncode == 1 and "cannot read" in missing.stderr and "Traceback" not in missing.stderr


NODES = """\
kubernetes: {clusterCIDR: [10.244.0.0/16, "fd00:244::/48"]}
links:
  lan: {subnet: 10.247.0.0/24, ipv6: "fd00:247::/64"}
  side: {subnet: 10.246.0.0/24}
hosts:
  n1:
    links: {side: 10.246.0.5, lan: 10.247.0.11}
    kubernetes: {podCIDR: [10.244.1.0/24, "fd00:244:0:1::/64"]}
    containers:
      web: {net: pods, serve: {http: 80}}
  n2:
    links: {lan: 10.247.0.12}
    kubernetes: {podCIDR: 10.244.2.0/24}
  other:
    links: [side]
"""


def test_kubernetes_nodes_get_internal_ips_on_the_link_they_share_and_a_nodes_file() -> None:
    from netkit.lab import nodes

    sc = scenario.parse(NODES, "lab.yaml")
    assert [h.name for h in sc.nodes()] == ["n1", "n2"] and not sc.hosts["other"].is_node
    assert sc.cluster_link == "lan" and [str(c) for c in sc.cluster_cidrs] == ["10.244.0.0/16", "fd00:244::/48"]
    assert sc.internal_ips("n1") == ["10.247.0.11", "fd00:247::b"]
    assert nodes.nodes_document(sc) == {"nodes": [
        {"name": "n1", "internalIPs": ["10.247.0.11", "fd00:247::b"], "podCIDRs": ["10.244.1.0/24", "fd00:244:0:1::/64"]},
        {"name": "n2", "internalIPs": ["10.247.0.12", "fd00:247::c"], "podCIDRs": ["10.244.2.0/24"]}]}


@pytest.mark.parametrize("text, where, words", [
    ("kubernetes: {clusterCIDR: 10.244.0.0/16}\nhosts:\n  a: {}\n", "lab.yaml:1:", "no host is a Kubernetes node"),
    ("kubernetes: {clusterCIDR: 10.244.0.0/16}\nhosts:\n  a:\n    links: [w]\n    kubernetes: {podCIDR: 10.9.1.0/24}\n",
     "lab.yaml:5:", "not inside the clusterCIDR"),
    ("hosts:\n  a:\n    links: [w]\n    kubernetes: {podCIDR: 10.9.0.0/16}\n"
     "  b:\n    links: [w]\n    kubernetes: {podCIDR: 10.9.1.0/24}\n", "lab.yaml:7:", "overlaps 10.9.0.0/16 of node a"),
    ("hosts:\n  a:\n    links: [w]\n    kubernetes: {podCIDR: 10.9.1.0/24}\n"
     "  b:\n    links: [v]\n    kubernetes: {podCIDR: 10.9.2.0/24}\n", "lab.yaml:4:", "must share a link"),
    ("hosts:\n  a:\n    links: [w]\n    kubernetes: {podCIDR: 'fd00:9::/64'}\n", "lab.yaml:4:", "dual-stack"),
    ("hosts:\n  a:\n    links: [w]\n    kubernetes: {podCIDR: [10.9.1.0/24, 10.9.2.0/24]}\n", "lab.yaml:4:",
     "one subnet per IP family"),
    ("hosts:\n  a:\n    links: [w]\n    kubernetes: {}\n", "lab.yaml:4:", "needs podCIDR"),
    ("hosts:\n  a:\n    containers:\n      c: {net: pods, cmd: [x]}\n", "lab.yaml:4:", "pods on a Kubernetes node"),
    ("hosts:\n  a:\n    links: [w]\n    networks: {pods: {}}\n    kubernetes: {podCIDR: 10.9.1.0/24}\n",
     "lab.yaml:4:", "give this network another name"),
    ("hosts:\n  a:\n    links: [w]\n    kubernetes: {podCIDR: 10.9.1.0/24}\n    containers:\n"
     "      c: {net: pods, aliases: [x], cmd: [x]}\n", "lab.yaml:6:", "with DNS"),
])
def test_invalid_kubernetes_nodes_are_refused_at_their_line(text: str, where: str, words: str) -> None:
    msg = _error(text)
    assert msg.startswith(where), msg
    assert words in msg, msg
