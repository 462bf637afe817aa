"""Which names each asker sees (aardvark-dns's and Docker's rule): every network of the asking container.

Pure: the gates ``scopes.gates`` builds from records, asked with real query bytes; no sockets.
"""

from __future__ import annotations

from dnslib import RCODE, DNSRecord

from netkit.dns import answer, records, scopes

DOMAIN = records.DEFAULT_DOMAIN


def _net(name: str, prefix: str, *entries: records.Entry, upstreams: list[str] | None = None) -> records.NetworkRecords:
    return records.NetworkRecords(name, gateways=[f"{prefix}.1"], subnets=[f"{prefix}.0/24"],
                                  upstreams=["192.0.2.53"] if upstreams is None else upstreams, entries=list(entries))


# api on front and back, db on back only, client on front only; "svc" an alias on both networks.
FRONT = _net("front", "10.71.0",
             records.Entry("api", "eth0", ["api"], ["10.71.0.2/24"]),
             records.Entry("client", "eth0", ["client", "svc"], ["10.71.0.3/24"]))
BACK = _net("back", "10.72.0",
            records.Entry("api", "eth1", ["api"], ["10.72.0.2/24"]),
            records.Entry("db", "eth0", ["db", "svc"], ["10.72.0.3/24"]))


def _ask(gate: scopes.Gate, client: str, name: str, qtype: str = "A") -> tuple[int, list[str]]:
    view = gate.view_for(client)
    assert view is not None
    decision = view.decide(bytes(DNSRecord.question(name, qtype).pack()), False, client)
    if decision.forward:
        return -1, []
    reply = DNSRecord.parse(decision.reply)
    return reply.header.rcode, [str(rr.rdata) for rr in reply.rr]


def test_a_container_on_two_networks_resolves_both_whichever_gateway_it_asks() -> None:
    gates = scopes.gates([FRONT, BACK])
    assert _ask(gates["front"], "10.71.0.2", f"db.{DOMAIN}") == (RCODE.NOERROR, ["10.72.0.3"])
    assert _ask(gates["front"], "10.71.0.2", "client") == (RCODE.NOERROR, ["10.71.0.3"])
    assert _ask(gates["back"], "10.72.0.2", f"client.{DOMAIN}") == (RCODE.NOERROR, ["10.71.0.3"])
    # Itself: an address on each network.
    assert sorted(_ask(gates["back"], "10.72.0.2", "api")[1]) == ["10.71.0.2", "10.72.0.2"]
    # A reverse lookup of either network's container.
    rcode, ptr = _ask(gates["front"], "10.71.0.2", "3.0.72.10.in-addr.arpa", "PTR")
    assert (rcode, ptr) == (RCODE.NOERROR, [f"db.{DOMAIN}."])


def test_names_of_a_network_the_asker_is_not_on_do_not_resolve() -> None:
    gates = scopes.gates([FRONT, BACK])
    assert _ask(gates["front"], "10.71.0.3", f"db.{DOMAIN}") == (RCODE.NXDOMAIN, [])
    assert _ask(gates["front"], "10.71.0.3", "db") == (-1, [])  # a bare name goes upstream
    assert _ask(gates["back"], "10.72.0.3", f"client.{DOMAIN}") == (RCODE.NXDOMAIN, [])
    # Only the asker's side of a name on both networks.
    assert _ask(gates["back"], "10.72.0.3", "api") == (RCODE.NOERROR, ["10.72.0.2"])
    assert _ask(gates["front"], "10.71.0.3", "api") == (RCODE.NOERROR, ["10.71.0.2"])
    assert _ask(gates["back"], "10.72.0.3", "3.0.71.10.in-addr.arpa", "PTR") == (-1, [])


def test_an_alias_on_both_networks_gives_every_address_in_rotating_order() -> None:
    gates = scopes.gates([FRONT, BACK])
    firsts = set()
    for _ in range(2):
        rcode, addrs = _ask(gates["front"], "10.71.0.2", f"svc.{DOMAIN}")
        assert rcode == RCODE.NOERROR and sorted(addrs) == ["10.71.0.3", "10.72.0.3"]
        firsts.add(addrs[0])
    assert len(firsts) == 2
    assert _ask(gates["back"], "10.72.0.3", "svc") == (RCODE.NOERROR, ["10.72.0.3"])


def test_containers_on_the_same_networks_share_one_view_and_strangers_see_the_network() -> None:
    gates = scopes.gates([FRONT, BACK])
    assert gates["front"].view_for("10.71.0.2") is gates["back"].view_for("10.72.0.2")
    # An address of the subnet no attachment holds: the network's own names; outside: refused (None).
    assert _ask(gates["front"], "10.71.0.99", "client") == (RCODE.NOERROR, ["10.71.0.3"])
    assert _ask(gates["front"], "10.71.0.99", f"db.{DOMAIN}") == (RCODE.NXDOMAIN, [])
    assert gates["front"].view_for("10.72.0.3") is None and gates["front"].view_for("bogus") is None


def test_a_container_with_a_way_out_forwards_even_from_its_internal_network() -> None:
    """Docker's rule: a container on an internal network and another one may resolve outside names."""
    inner = _net("inner", "10.73.0", records.Entry("api", "eth2", ["api"], ["10.73.0.2/24"]),
                 records.Entry("lone", "eth0", ["lone"], ["10.73.0.3/24"]), upstreams=[])
    gates = scopes.gates([FRONT, BACK, inner])
    assert _ask(gates["inner"], "10.73.0.2", "example.org")[0] == -1
    view = gates["inner"].view_for("10.73.0.3")
    assert view is not None
    reply = view.decide(bytes(DNSRecord.question("example.org").pack()), False, "10.73.0.3").reply
    assert DNSRecord.parse(reply).header.rcode == RCODE.REFUSED
    assert isinstance(view, answer.View) and view.upstreams == []


def test_an_asker_by_its_ipv6_address_sees_its_networks_too() -> None:
    dual = records.NetworkRecords("dual", gateways=["10.74.0.1", "fd74::1"], subnets=["10.74.0.0/24", "fd74::/64"],
                                  entries=[records.Entry("api", "eth3", ["api"], ["10.74.0.2/24", "fd74::2/64"])])
    gates = scopes.gates([FRONT, BACK, dual])
    assert gates["dual"].view_for("fd74::2") is gates["front"].view_for("10.71.0.2")
    assert _ask(gates["dual"], "fd74::2", f"db.{DOMAIN}") == (RCODE.NOERROR, ["10.72.0.3"])
    assert _ask(gates["dual"], "fd74::2", "api", "AAAA") == (RCODE.NOERROR, ["fd74::2"])
    assert _ask(gates["dual"], "fd74::99", f"db.{DOMAIN}") == (RCODE.NXDOMAIN, [])
