"""The records files: names accepted, atomic JSON per network, a previous boot's entries read as none."""

from __future__ import annotations

import os
import pathlib

import pytest

from netkit import errors
from netkit.dns import records


def _recs(*entries: records.Entry) -> records.NetworkRecords:
    return records.NetworkRecords("net1", gateways=["10.9.0.1"], subnets=["10.9.0.0/24"], entries=list(entries))


WEB = records.Entry("c1", "eth0", ["web", "www"], ["10.9.0.2/24"])


@pytest.mark.parametrize("name, want", [("web", "web"), ("Web_1", "web_1"), ("a.b-c", "a.b-c"), ("x.", "x"),
                                        ("netkit_0123abcd", "netkit_0123abcd")])
def test_names_kept_lowercase(name: str, want: str) -> None:
    assert records.valid_name(name) == want


@pytest.mark.parametrize("name", ["", "-web", "we b", "a..b", "a/b", "é", "x" * 64, ".".join(["abc"] * 70)])
def test_names_that_cannot_be_dns_names(name: str) -> None:
    with pytest.raises(errors.CNIError) as exc:
        records.valid_name(name)
    assert exc.value.code == errors.INVALID_CONFIG


def test_save_load_and_the_last_entry_removes_the_file(tmp_path: pathlib.Path) -> None:
    d = str(tmp_path)
    with records.locked(d):
        records.save(d, _recs(WEB))
    got = records.load(d, "net1")
    assert got is not None and got.entries == [WEB] and got.gateways == ["10.9.0.1"]
    assert [r.network for r in records.load_all(d)] == ["net1"]
    records.save(d, _recs())
    assert records.load(d, "net1") is None and not os.path.exists(records.path(d, "net1"))
    assert [f for f in os.listdir(d) if ".tmp." in f] == []  # the atomic write left no temp file


def test_a_previous_boots_records_hold_no_entry(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = str(tmp_path)
    monkeypatch.setenv("NETKIT_BOOT_ID", "boot-a")
    records.save(d, _recs(WEB))
    monkeypatch.setenv("NETKIT_BOOT_ID", "boot-b")  # a reboot: no container of boot-a lives
    got = records.load(d, "net1")
    assert got is not None and got.entries == []
    assert records.load_all(d) == []  # the daemon serves nothing of it


def test_unreadable_records_are_none(tmp_path: pathlib.Path) -> None:
    (tmp_path / "net1.json").write_text("{not json")
    (tmp_path / "net2.json").write_text('{"entries": [{"container_id": 1}]}')
    os.mkfifo(tmp_path / "net3.json")  # never blocks a reader
    assert [records.load(str(tmp_path), n) for n in ("net1", "net2", "net3")] == [None, None, None]
