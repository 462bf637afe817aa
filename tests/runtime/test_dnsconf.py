"""A container's resolv.conf from its networks' resolvers (netkit/runtime/dnsconf.py): pure, no namespaces."""

from __future__ import annotations

import os
from pathlib import Path

from netkit.runtime import dnsconf
from netkit.runtime.root import Root
from netkit.runtime.state import Container, Endpoint


def _ep(network: str, ifname: str, gateway: str = "", domain: str = "dns.netkit") -> Endpoint:
    result = {"dns": {"nameservers": [gateway], "search": [domain]}} if gateway else {}
    return Endpoint(network=network, ifname=ifname, cni_result=result)


def _ctr(network: str, *eps: Endpoint) -> Container:
    return Container(id="c" * 64, name="c", command=["true"], env={}, cwd="/", hostname="c", network=network,
                     net_kind="bridge", created=0.0, log="", netns="", endpoints=list(eps))


def test_every_dns_network_named_the_primary_first_three_at_most() -> None:
    eps = [_ep("a", "eth0", "10.1.0.1"), _ep("plain", "eth1"), _ep("b", "eth2", "10.2.0.1", "b.test"),
           _ep("c", "eth3", "10.3.0.1"), _ep("d", "eth4", "10.4.0.1")]
    assert dnsconf.network_resolver(_ctr("a", *eps)) == (["10.1.0.1", "10.2.0.1", "10.3.0.1"],
                                                         ["dns.netkit", "b.test"])
    # The first network left (disconnect promotes the next one): its resolver first.
    assert dnsconf.network_resolver(_ctr("c", *eps[1:]))[0] == ["10.3.0.1", "10.2.0.1", "10.4.0.1"]
    assert dnsconf.network_resolver(_ctr("plain", eps[1])) == ([], [])


def test_refresh_rewrites_the_bound_file_in_place_and_makes_none(tmp_path: Path) -> None:
    root = Root(str(tmp_path))
    ctr = _ctr("a", _ep("a", "eth0", "10.1.0.1"))
    dnsconf.refresh(root, ctr)  # never started: no file to rewrite, none made
    assert not os.path.exists(os.path.join(root.container_dir(ctr.id), dnsconf.FILE))
    os.makedirs(root.container_dir(ctr.id))
    path = os.path.join(root.container_dir(ctr.id), dnsconf.FILE)
    with open(path, "w") as f:
        f.write("nameserver 192.0.2.1\nnameserver 192.0.2.2\nsearch a.very.long.search.domain.test\n")
    inode = os.stat(path).st_ino
    dnsconf.refresh(root, ctr)
    with open(path) as f:
        text = f.read()
    assert text.startswith("nameserver 10.1.0.1\nsearch dns.netkit") and "192.0.2" not in text
    assert os.stat(path).st_ino == inode  # the inode the container's /etc/resolv.conf is a bind mount of
