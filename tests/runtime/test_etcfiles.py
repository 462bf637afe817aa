"""/etc/hosts and /etc/resolv.conf composition (netkit/runtime/etcfiles.py): plain values in, text out."""

from __future__ import annotations

from pathlib import Path

import pytest

from netkit.runtime import etcfiles
from netkit.runtime.etcfiles import ExtraHost, Resolver
from netkit.runtime.state import ContainerError


@pytest.mark.parametrize("spec, expected", [
    ("db:10.1.2.3", ExtraHost("db", "10.1.2.3")),
    ("db=10.1.2.3", ExtraHost("db", "10.1.2.3")),
    ("six:fd00::1", ExtraHost("six", "fd00::1")),
    ("six:[fd00:0::1]", ExtraHost("six", "fd00::1")),
    ("gw:host-gateway", ExtraHost("gw", "host-gateway")),
])
def test_add_host_forms(spec: str, expected: ExtraHost) -> None:
    assert etcfiles.parse_add_host(spec) == expected


@pytest.mark.parametrize("spec", ["db", ":10.1.2.3", "db:", "db:10.1.2", "db:example.com", "a b:10.0.0.1"])
def test_bad_add_host_is_refused(spec: str) -> None:
    with pytest.raises(ContainerError):
        etcfiles.parse_add_host(spec)


def test_hosts_lists_localhost_own_addresses_then_extras_with_host_gateway_resolved() -> None:
    text = etcfiles.hosts(["10.5.0.2/24", "fd00::2/64"], "box", [ExtraHost("db", "10.1.2.3"),
                                                               ExtraHost("gw", "host-gateway")], gateway="10.5.0.1")
    assert text == etcfiles.BASE_HOSTS + "10.5.0.2\tbox\nfd00::2\tbox\n10.1.2.3\tdb\n10.5.0.1\tgw\n"
    with pytest.raises(ContainerError, match="no gateway"):
        etcfiles.hosts([], "box", [ExtraHost("gw", "host-gateway")])


def test_resolv_conf_text_and_search_dot_means_none() -> None:
    assert etcfiles.resolv_conf(["10.0.0.53", "fd00::53"], ["a.test", "b.test"], ["ndots:2"]) == (
        "nameserver 10.0.0.53\nnameserver fd00::53\nsearch a.test b.test\noptions ndots:2\n")
    assert etcfiles.resolv_conf(["10.0.0.53"], ["."], []) == "nameserver 10.0.0.53\n"


def test_each_given_setting_replaces_the_hosts() -> None:
    host = Resolver(["10.9.0.1"], ["corp.test"], ["rotate"])
    assert etcfiles.compose_resolver(host, [], ["x.test"], []) == Resolver(["10.9.0.1"], ["x.test"], ["rotate"])
    assert etcfiles.compose_resolver(host, ["10.0.0.53"], [], ["ndots:1"]) == Resolver(["10.0.0.53"], ["corp.test"],
                                                                                          ["ndots:1"])


def test_host_resolver_drops_loopback_stub_for_its_upstreams(tmp_path: Path) -> None:
    stub, upstreams = tmp_path / "resolv.conf", tmp_path / "upstreams.conf"
    stub.write_text("# managed\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan.test\n")
    upstreams.write_text("nameserver 192.0.2.53\nnameserver 127.0.0.1\nsearch lan.test\n")
    own = etcfiles.host_resolver(True, str(stub), str(upstreams))
    assert own == Resolver(["192.0.2.53"], ["lan.test"], ["edns0", "trust-ad"])
    # In the host's own namespace the stub is reachable: kept as it is.
    assert etcfiles.host_resolver(False, str(stub), str(upstreams)).nameservers == ["127.0.0.53"]
    assert etcfiles.host_resolver(True, str(tmp_path / "absent"), str(upstreams)) == Resolver()
    # Only loopback resolvers and no systemd-resolved upstreams: Docker's defaults, not an empty file.
    for missing_or_loopback in (tmp_path / "absent", stub):
        got = etcfiles.host_resolver(True, str(stub), str(missing_or_loopback))
        assert got == Resolver(["8.8.8.8", "8.8.4.4"], ["lan.test"], ["edns0", "trust-ad"])


@pytest.mark.parametrize("value", ["", "a b", "ndots:1\nnameserver 1.2.3.4"])
def test_a_search_domain_or_option_is_one_word(value: str) -> None:
    with pytest.raises(ContainerError):
        etcfiles.check_word("--dns-option", value)


@pytest.mark.parametrize("value", ["foo", "", "1.2.3.4\nnameserver 6.6.6.6", "1.2.3.4 ", "fe80::1%eth0"])
def test_a_nameserver_is_an_ip_address(value: str) -> None:
    with pytest.raises(ContainerError, match="is not an ip address"):
        etcfiles.check_nameserver(value)
    assert etcfiles.check_nameserver("2001:db8::53") == "2001:db8::53"
