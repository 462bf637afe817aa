"""podman 4.3 resolves container names and ``--network-alias`` through netkit-dns.

The network is made by ``podman network create`` with DNS on: podman writes its dnsname entry
(``domainName``, capability ``aliases``) and only the entry's ``type`` is changed to netkit-dns (and the
records go to the test's directory, as the leases do).  Names are asked from inside podman's
containers, with busybox's nslookup and wget, through the resolv.conf podman wrote from the result.
Only netkit's variant: Debian ships no dnsname plugin to compare with.
"""

from __future__ import annotations

import json
import os
from typing import Iterator

import pytest

from harness import podman as hp
from netkit.agent import protocol
from netkit.dns import control
from netkit.net import netns
from tests.e2e import podman as pmod
from tests.e2e.podman import poll

DNS_NET, DNS_SUBNET, DNS_GATEWAY = "nkdns", "10.90.0.0/24", "10.90.0.1"
DNS_NET2, DNS_SUBNET2, DNS_GATEWAY2 = "nkdns2", "10.91.0.0/24", "10.91.0.1"
WAIT_S = 60  # a hang guard for a freshly started httpd, not a bound (the poll ends at the first answer)


@pytest.fixture(scope="module")
def dnsnet(podman_store: pmod.Store) -> Iterator[tuple[pmod.Network, dict, dict]]:
    """netkit's podman network plus a DNS-enabled one of podman's making: (network, written, adapted)."""
    with pmod.network(podman_store, "netkit") as net:
        pm = net.podman
        records_dir = os.path.join(os.path.dirname(net.box.data_dir), "dns")
        # podman 4.3 writes its dnsname entry only when it finds a plugin of that name: a podman
        # configuration sharing the network dir, with a stand-in "dnsname" it never runs, creates it.
        stand_in = os.path.join(podman_store.dir, "dnsname-bin")
        os.makedirs(stand_in, exist_ok=True)
        with open(os.path.join(stand_in, "dnsname"), "w") as f:
            f.write("#!/bin/sh\nexit 1\n")
        os.chmod(os.path.join(stand_in, "dnsname"), 0o755)
        # Its validation execs VERSION of each plugin: netkit's then ask the network's own agent (stopped
        # with the network), never the machine's default socket.
        maker = pmod.Podman(podman_store, podman_store.write_conf(
            "dnsname-maker", [stand_in, podman_store.bin_dir], net_dir=podman_store.net_dirs[pm.conf]), net.host,
            **{protocol.ENV_SOCKET: net.agent_socket})
        made = {}
        for name, subnet, gateway in ((DNS_NET, DNS_SUBNET, DNS_GATEWAY), (DNS_NET2, DNS_SUBNET2, DNS_GATEWAY2)):
            maker("network", "create", "--subnet", subnet, "--gateway", gateway, name)
            podman_store.networks.append(name)
            path = os.path.join(podman_store.net_dirs[pm.conf], f"{name}.conflist")
            with open(path) as f:
                made[name] = json.load(f)
            conf = hp.adapt(made[name], "netkit", net.box.data_dir)
            for plugin in conf["plugins"]:
                if plugin["type"] == "netkit-dns":
                    plugin["dataDir"] = records_dir
            with open(path, "w") as f:
                json.dump(conf, f, indent=2)
        written, conf = made[DNS_NET], hp.adapt(made[DNS_NET], "netkit", net.box.data_dir)
        try:
            yield net, written, conf
        finally:
            pm.rm_all()
            with netns.entered(net.host.path):
                control.stop(records_dir)


def _nslookup(pm: pmod.Podman, ctr: str, name: str) -> list[str]:
    """The addresses busybox nslookup gets for ``name`` from the container's resolv.conf server."""
    proc = pm.exec(ctr, "nslookup", "-type=a", name)
    lines = proc.stdout.splitlines()
    answers = lines[next((i for i, line in enumerate(lines) if line.startswith("Name:")), len(lines)):]
    return sorted(line.split()[-1] for line in answers if line.startswith("Address"))


def test_podmans_dns_conflist_with_only_the_type_changed(dnsnet: tuple[pmod.Network, dict, dict]) -> None:
    _, written, conf = dnsnet
    dns = [p for p in written["plugins"] if p["type"] == "dnsname"]
    assert dns and dns[0]["capabilities"] == {"aliases": True} and "domainName" in dns[0]
    ours = [p for p in conf["plugins"] if p["type"] == "netkit-dns"][0]
    assert {k: v for k, v in ours.items() if k not in ("type", "dataDir")} == \
        {k: v for k, v in dns[0].items() if k != "type"}


def test_names_and_network_aliases_resolve_in_podmans_containers(dnsnet: tuple[pmod.Network, dict, dict]) -> None:
    net, written, _ = dnsnet
    pm = net.podman
    domain = [p for p in written["plugins"] if p["type"] == "dnsname"][0]["domainName"]
    pm.web("web1", "--network", DNS_NET, "--network-alias", "api")
    pm.web("web2", "--network", DNS_NET, "--network-alias", "api")
    pm.sleeper("client", "--network", DNS_NET)
    resolv = pm.exec("client", "cat", "/etc/resolv.conf").stdout
    assert f"nameserver {DNS_GATEWAY}" in resolv and domain in resolv
    web1, web2 = pm.address("web1", DNS_NET), pm.address("web2", DNS_NET)
    assert _nslookup(pm, "client", "web1") == [web1]
    assert _nslookup(pm, "client", f"web2.{domain}") == [web2]
    assert _nslookup(pm, "client", "api") == sorted([web1, web2])        # the alias: both replicas
    assert poll(lambda: pm.wget("client", "http://web1/"), WAIT_S) == "web1"   # by name, through wget
    assert poll(lambda: pm.wget("client", f"http://web2.{domain}/"), WAIT_S) == "web2"
    pm.rm("web1")
    assert _nslookup(pm, "client", "api") == [web2]                       # gone with its container
    assert _nslookup(pm, "client", "web1") == []


def test_a_container_on_two_networks_resolves_both_and_the_others_their_own(
        dnsnet: tuple[pmod.Network, dict, dict]) -> None:
    """aardvark-dns's rule, which podman users know: the names of every network of the asking container."""
    pm = dnsnet[0].podman
    pm.sleeper("both", "--network", DNS_NET, "--network", DNS_NET2)
    pm.sleeper("one", "--network", DNS_NET)
    pm.sleeper("two", "--network", DNS_NET2)
    resolv = pm.exec("both", "cat", "/etc/resolv.conf").stdout
    assert f"nameserver {DNS_GATEWAY}" in resolv and f"nameserver {DNS_GATEWAY2}" in resolv
    # busybox's nslookup asks every nameserver of resolv.conf: each of both's two resolvers answers alike.
    assert _nslookup(pm, "both", "one") == [pm.address("one", DNS_NET)] * 2
    assert _nslookup(pm, "both", "two") == [pm.address("two", DNS_NET2)] * 2
    assert _nslookup(pm, "one", "both") == [pm.address("both", DNS_NET)]
    assert _nslookup(pm, "two", "both") == [pm.address("both", DNS_NET2)]
    assert _nslookup(pm, "one", "two") == [] and _nslookup(pm, "two", "one") == []
    pm.rm("both", "one", "two")
