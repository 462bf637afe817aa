"""The ipam section of a network config: host-local's keys, defaults and validation."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from netkit import errors
from netkit.ipam import config

A = ipaddress.ip_address


def _parse(**ipam: Any) -> config.IPAMConfig:
    return config.parse({"ipam": ipam})


def _bad(**ipam: Any) -> errors.CNIError:
    with pytest.raises(errors.CNIError) as info:
        _parse(**ipam)
    assert info.value.code == errors.INVALID_CONFIG
    return info.value


def test_range_defaults_first_host_gateway_and_last_host() -> None:
    rng = config.parse_range({"subnet": "10.1.0.0/24"})
    assert (rng.start, rng.end, rng.gateway) == (A("10.1.0.1"), A("10.1.0.254"), A("10.1.0.1"))
    assert rng.size() == 253  # .1 .. .254 without the gateway


def test_range_addresses_skip_gateway() -> None:
    rng = config.parse_range({"subnet": "10.1.0.0/29", "gateway": "10.1.0.3"})
    assert list(rng.addresses()) == [A(f"10.1.0.{i}") for i in (1, 2, 4, 5, 6)]
    assert rng.size() == 5


def test_range_addresses_from_a_given_first() -> None:
    rng = config.parse_range({"subnet": "10.1.0.0/29"})
    assert list(rng.addresses(A("10.1.0.5"))) == [A("10.1.0.5"), A("10.1.0.6")]
    assert list(rng.addresses(A("10.2.0.5")))[0] == A("10.1.0.2")  # outside: from the start


def test_range_start_end_honoured_and_gateway_outside_not_counted() -> None:
    rng = config.parse_range({"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.100", "rangeEnd": "10.1.0.102"})
    assert list(rng.addresses()) == [A("10.1.0.100"), A("10.1.0.101"), A("10.1.0.102")]
    assert rng.size() == 3
    assert A("10.1.0.99") not in rng and A("10.1.0.103") not in rng and A("10.1.0.100") in rng


def test_subnet_host_bits_are_tolerated() -> None:
    assert str(config.parse_range({"subnet": "10.1.0.77/24"}).subnet) == "10.1.0.0/24"


def test_ipv6_range_uses_the_whole_subnet() -> None:
    rng = config.parse_range({"subnet": "fd00:1::/64"})
    assert rng.start == A("fd00:1::1") and rng.gateway == A("fd00:1::1")
    assert rng.end == A("fd00:1::ffff:ffff:ffff:ffff")
    assert next(iter(rng.addresses())) == A("fd00:1::2")
    assert A("10.0.0.1") not in rng


@pytest.mark.parametrize("raw", [
    {"subnet": "10.1.0.0/31"}, {"subnet": "10.1.0.0/32"}, {"subnet": "fd00::/127"},
    {"subnet": "bogus"}, {"subnet": "10.1.0.0/33"}, {}, "10.1.0.0/24",
    {"subnet": "10.1.0.0/24", "rangeStart": "10.2.0.1"},
    {"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.0"},
    {"subnet": "10.1.0.0/24", "rangeEnd": "10.1.0.255"},
    {"subnet": "10.1.0.0/24", "gateway": "10.1.1.1"},
    {"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.50", "rangeEnd": "10.1.0.40"},
    {"subnet": "10.1.0.0/24", "rangeStart": "not-an-ip"},
    {"subnet": "10.1.0.0/24", "rangeStart": "fd00::1"},
])
def test_bad_range_is_code_7(raw: object) -> None:
    with pytest.raises(errors.CNIError) as info:
        config.parse_range(raw)
    assert info.value.code == errors.INVALID_CONFIG


def test_smallest_ipv4_subnet_has_one_address() -> None:
    rng = config.parse_range({"subnet": "10.1.0.0/30"})
    assert list(rng.addresses()) == [A("10.1.0.2")]
    assert rng.size() == 1


def test_ranges_form_with_dual_stack_sets() -> None:
    cfg = _parse(ranges=[[{"subnet": "10.1.0.0/24"}, {"subnet": "10.2.0.0/24"}], [{"subnet": "fd00::/64"}]])
    assert [[str(r.subnet) for r in s] for s in cfg.range_sets] == [["10.1.0.0/24", "10.2.0.0/24"], ["fd00::/64"]]
    assert cfg.data_dir == config.DEFAULT_DATA_DIR
    assert cfg.routes == [] and cfg.resolv_conf == ""


def test_old_single_range_form() -> None:
    cfg = _parse(subnet="10.3.0.0/24", rangeStart="10.3.0.10", rangeEnd="10.3.0.20", gateway="10.3.0.254")
    assert len(cfg.range_sets) == 1 and len(cfg.range_sets[0]) == 1
    rng = cfg.range_sets[0][0]
    assert (str(rng.start), str(rng.end), str(rng.gateway)) == ("10.3.0.10", "10.3.0.20", "10.3.0.254")


def test_ranges_win_over_old_form() -> None:
    cfg = _parse(subnet="10.3.0.0/24", ranges=[[{"subnet": "10.4.0.0/24"}]])
    assert str(cfg.range_sets[0][0].subnet) == "10.4.0.0/24"


def test_routes_data_dir_and_resolv_conf() -> None:
    cfg = _parse(ranges=[[{"subnet": "10.1.0.0/24"}]], routes=[{"dst": "0.0.0.0/0"}, {"dst": "10.9.0.0/16", "gw": "10.1.0.9"}],
                 dataDir="/tmp/x", resolvConf="/etc/r.conf")
    assert [r.to_result() for r in cfg.routes] == [{"dst": "0.0.0.0/0"}, {"dst": "10.9.0.0/16", "gw": "10.1.0.9"}]
    assert cfg.data_dir == "/tmp/x" and cfg.resolv_conf == "/etc/r.conf"


@pytest.mark.parametrize("ipam", [
    {},
    {"ranges": []},
    {"ranges": [[]]},
    {"ranges": [{"subnet": "10.1.0.0/24"}]},
    {"ranges": "10.1.0.0/24"},
    {"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "fd00::/64"}]]},
    {"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.1.0.0/25"}]]},
    {"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.200"}]]},
    {"ranges": [[{"subnet": "fd00::/64"}], [{"subnet": "fd00::/48"}]]},
    {"ranges": [[{"subnet": "10.1.0.0/24"}]], "routes": {"dst": "0.0.0.0/0"}},
    {"ranges": [[{"subnet": "10.1.0.0/24"}]], "routes": [{"gw": "10.1.0.1"}]},
    {"ranges": [[{"subnet": "10.1.0.0/24"}]], "routes": [{"dst": "bogus"}]},
    {"ranges": [[{"subnet": "10.1.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0", "gw": "bogus"}]},
    {"ranges": [[{"subnet": "10.1.0.0/24"}]], "dataDir": ["/tmp"]},
])
def test_bad_ipam_is_code_7(ipam: dict[str, Any]) -> None:
    _bad(**ipam)


def test_missing_ipam_object_is_code_7() -> None:
    for conf in ({}, {"ipam": "host-local"}):
        with pytest.raises(errors.CNIError) as info:
            config.parse(conf)
        assert info.value.code == errors.INVALID_CONFIG


def test_disjoint_ranges_in_one_subnet_are_allowed() -> None:
    cfg = _parse(ranges=[[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "rangeEnd": "10.1.0.19"},
                          {"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.20", "rangeEnd": "10.1.0.29"}]])
    assert sum(r.size() for r in cfg.range_sets[0]) == 20
