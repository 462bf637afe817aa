"""The CRI test client's messages on the wire (harness/protowire.py, harness/cri.py), against bytes
worked out by hand from the protobuf encoding rules: what containerd decodes is what the tests mean."""

from __future__ import annotations

import pytest

from harness import cri
from harness import protowire as pw


def test_varints_and_proto3_defaults() -> None:
    assert pw.varint(1) == b"\x01" and pw.varint(300) == b"\xac\x02"
    assert pw.varint(-1) == b"\xff" * 9 + b"\x01"   # int32/int64 -1: ten bytes, as protobuf writes it
    assert pw.uint(3, 0) == b"" and pw.string(1, "") == b""   # proto3 leaves defaults out
    assert pw.blob(8, b"") == b"\x42\x00"                     # an empty message is still there


def test_a_port_mapping_as_containerd_reads_it() -> None:
    # protocol UDP = 1 (field 1), container_port 8080 (field 2), host_port 18080 (field 3), host_ip (field 4)
    got = cri.PortMapping(container_port=8080, host_port=18080, protocol="udp", host_ip="10.0.0.1").encode()
    assert got == b"\x08\x01" + b"\x10\x90\x3f" + b"\x18\xa0\x8d\x01" + b"\x22\x0810.0.0.1"


def test_a_sandbox_config_decodes_back_to_what_was_set() -> None:
    config = cri.PodSandboxConfig(name="web", uid="u-1", namespace="ns", hostname="web",
                                  dns=cri.DNSConfig(servers=["10.96.0.10"], searches=["ns.svc"], options=["ndots:5"]),
                                  port_mappings=[cri.PortMapping(80, 8080), cri.PortMapping(53, 5353, "udp")],
                                  labels={"app": "web"}, annotations={"a": "b"}, cgroup_parent="/kubepods")
    fields = pw.decode(config.encode())
    metadata = pw.nested(fields, 1)
    assert (pw.text(metadata, 1), pw.text(metadata, 2), pw.text(metadata, 3)) == ("web", "u-1", "ns")
    assert pw.text(fields, 2) == "web"
    dns = pw.nested(fields, 4)
    assert [v.decode() for v in dns[1] + dns[2] + dns[3] if isinstance(v, bytes)] == ["10.96.0.10", "ns.svc", "ndots:5"]
    ports = [pw.decode(p) for p in fields[5] if isinstance(p, bytes)]
    assert [(pw.number(p, 1), pw.number(p, 2), pw.number(p, 3)) for p in ports] == [(0, 80, 8080), (1, 53, 5353)]
    assert pw.decoded_map(fields, 6) == {"app": "web"} and pw.decoded_map(fields, 7) == {"a": "b"}
    assert pw.text(pw.nested(fields, 8), 1) == "/kubepods"


def test_a_status_response_with_fields_the_client_does_not_model() -> None:
    network = pw.string(1, "10.78.0.5") + pw.blob(2, pw.string(1, "fd00::5"))
    status = (pw.string(1, "abc") + pw.blob(2, pw.string(1, "web") + pw.string(3, "default"))
              + pw.uint(3, cri.SANDBOX_NOTREADY) + pw.uint(4, 1_700_000_000_000_000_000) + pw.blob(5, network)
              + b"\x51" + b"\x00" * 8)  # field 10 as a fixed64: unknown to us, skipped
    response = pw.blob(1, status) + pw.string_map(2, {"info": '{"pid": 42}'})
    got = cri._status(response)
    assert (got.id, got.name, got.namespace, got.ready, got.ip) == ("abc", "web", "default", False, "10.78.0.5")
    assert got.additional_ips == ["fd00::5"] and got.pid == 42



@pytest.mark.parametrize("data", [b"\x51" + b"\x00" * 7,   # field 10, fixed64: a byte missing
                                  b"\x5d" + b"\x00" * 3,   # field 11, fixed32: a byte missing
                                  b"\x0a\x05abc",           # a length past the end
                                  b"\x08\x80"])             # a varint cut off
def test_a_truncated_field_is_an_error_not_a_short_value(data: bytes) -> None:
    with pytest.raises(pw.WireError):
        pw.decode(data)


def test_whole_fixed_fields_decode() -> None:
    assert pw.decode(b"\x51\x01" + b"\x00" * 7 + b"\x5d\x02\x00\x00\x00") == {10: [1], 11: [2]}
