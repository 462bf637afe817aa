"""Where other names are forwarded: the host's resolv.conf, a loopback stub replaced by its real upstreams."""

from __future__ import annotations

import pathlib

import pytest

from netkit.dns import upstreams


def _conf(tmp_path: pathlib.Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_the_hosts_nameservers_as_they_are(tmp_path: pathlib.Path) -> None:
    conf = _conf(tmp_path, "resolv.conf", "# comment\nsearch example.org\nnameserver 192.0.2.53\n"
                 "nameserver 2001:db8::53\nnameserver fe80::1%eth0\nnameserver bogus\noptions ndots:2\n")
    assert upstreams.host_upstreams(conf, str(tmp_path / "missing")) == ["192.0.2.53", "2001:db8::53", "fe80::1"]


def test_a_loopback_stub_is_replaced_by_systemd_resolveds_upstreams(tmp_path: pathlib.Path) -> None:
    stub = _conf(tmp_path, "stub", "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n")
    real = _conf(tmp_path, "real", "nameserver 198.51.100.1\nnameserver 198.51.100.2\n")
    assert upstreams.host_upstreams(stub, real) == ["198.51.100.1", "198.51.100.2"]
    # A loopback next to real servers is only dropped; a stub with nothing behind it: no upstream (REFUSED).
    mixed = _conf(tmp_path, "mixed", "nameserver 127.0.0.1\nnameserver 192.0.2.1\n")
    assert upstreams.host_upstreams(mixed, real) == ["192.0.2.1"]
    assert upstreams.host_upstreams(stub, str(tmp_path / "missing")) == []
    assert upstreams.host_upstreams(stub, _conf(tmp_path, "loop", "nameserver ::1\n")) == []


@pytest.mark.parametrize("spec, want", [("192.0.2.1", ("192.0.2.1", 53)), ("192.0.2.1:5353", ("192.0.2.1", 5353)),
                                        ("2001:db8::1", ("2001:db8::1", 53)), ("[2001:db8::1]:54", ("2001:db8::1", 54))])
def test_upstream_specs(spec: str, want: tuple[str, int]) -> None:
    assert upstreams.parse(spec) == want


@pytest.mark.parametrize("spec", ["example.org", "192.0.2.1:0", "192.0.2.1:70000", "[::1", ""])
def test_bad_upstream_specs(spec: str) -> None:
    with pytest.raises(ValueError):
        upstreams.parse(spec)
