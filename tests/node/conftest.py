"""Three "nodes" on one segment: a namespace per node, each with eth0 on a bridge in a segment
namespace (192.168.77.1x/24), as machines on one L2 network; all deleted after the test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from harness.hostns import Namespaces, Netns
from tests import sandbox as sb

SEGMENT = "192.168.77.{}/24"


@dataclass
class Cluster:
    """The segment's namespace and the nodes': name -> (namespace, InternalIP)."""

    segment: Netns
    nodes: dict[str, tuple[Netns, str]]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    spaces = Namespaces(sb.RUN_PREFIX)
    try:
        segment, *hosts = spaces.add(*(f"{spaces.tag}-{n}" for n in ("seg", "n1", "n2", "n3")), lo=True)
        segment.run("ip", "link", "add", "br0", "type", "bridge", check=True)
        segment.run("ip", "link", "set", "br0", "up", check=True)
        nodes = {}
        for i, host in enumerate(hosts, start=1):
            segment.run("ip", "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0", "netns", host.name,
                        check=True)
            segment.run("ip", "link", "set", f"p{i}", "master", "br0", "up", check=True)
            addr = SEGMENT.format(10 + i)
            host.run("ip", "addr", "add", addr, "dev", "eth0", check=True)
            host.run("ip", "link", "set", "eth0", "up", check=True)
            nodes[f"n{i}"] = (host, addr.split("/")[0])
        yield Cluster(segment, nodes)
    finally:
        problems = spaces.close()
        assert not problems, problems


def ns_path(ns: Netns) -> str:
    """Where a namespace of the cluster is bound."""
    return os.path.join("/run/netns", ns.name)
