"""Result conversion between the internal shape (spec 1.x) and every supported spec version."""

from __future__ import annotations

import pytest

from netkit import errors
from netkit.cni import result

INTERNAL = {
    "interfaces": [{"name": "eth0", "mac": "00:11:22:33:44:55", "sandbox": "/run/netns/x", "mtu": 1400,
                    "socketPath": "/s", "pciID": "0000:00:01.0"}],
    "ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 0},
            {"address": "fd00::2/64", "gateway": "fd00::1", "interface": 0}],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1", "mtu": 1300, "advmss": 1260, "priority": 5, "table": 100,
                "scope": 0}],
    "dns": {"nameservers": ["10.0.0.53"]},
}


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0"])
def test_old_versions_get_ip_version_field(version: str) -> None:
    out = result.encode(INTERNAL, version)
    assert out["cniVersion"] == version
    assert [ip["version"] for ip in out["ips"]] == ["4", "6"]


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_1_x_has_no_ip_version_field(version: str) -> None:
    out = result.encode(INTERNAL, version)
    assert out["cniVersion"] == version
    assert all("version" not in ip for ip in out["ips"])


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0", "1.0.0"])
def test_1_1_only_fields_dropped_below_1_1_0(version: str) -> None:
    out = result.encode(INTERNAL, version)
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}]
    assert out["interfaces"] == [{"name": "eth0", "mac": "00:11:22:33:44:55", "sandbox": "/run/netns/x"}]


def test_1_1_0_keeps_route_and_interface_fields() -> None:
    out = result.encode(INTERNAL, "1.1.0")
    assert out["routes"][0]["mtu"] == 1300 and out["routes"][0]["table"] == 100
    assert out["interfaces"][0]["mtu"] == 1400 and out["interfaces"][0]["pciID"] == "0000:00:01.0"


def test_encode_does_not_modify_its_input() -> None:
    before = repr(INTERNAL)
    result.encode(INTERNAL, "0.3.1")
    assert repr(INTERNAL) == before


def test_normalize_strips_version_and_cni_version() -> None:
    raw = {"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.0.0.2/24"},
                                          {"version": "6", "address": "fd00::2/64"}]}
    out = result.normalize(raw)
    assert out == {"ips": [{"address": "10.0.0.2/24"}, {"address": "fd00::2/64"}]}
    assert raw["ips"][0]["version"] == "4"  # input untouched


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_roundtrip_through_every_version_keeps_addresses(version: str) -> None:
    back = result.normalize(result.encode(INTERNAL, version))
    assert back["ips"] == INTERNAL["ips"]
    assert back["dns"] == INTERNAL["dns"]


@pytest.mark.parametrize("raw", [
    [1], "x", None,
    {"ips": "10.0.0.2/24"},
    {"ips": [{"gateway": "10.0.0.1"}]},
    {"ips": ["10.0.0.2/24"]},
    {"ips": [{"address": "not-an-ip"}]},
    {"ips": [{"address": 5}]},
    {"routes": {}},
    {"interfaces": "eth0"},
])
def test_normalize_refuses_malformed_results(raw: object) -> None:
    with pytest.raises(errors.CNIError) as info:
        result.normalize(raw)
    assert info.value.code == errors.DECODE_FAILURE
