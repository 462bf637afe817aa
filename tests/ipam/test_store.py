"""Leases on disk in host-local's layout, reference lease files included."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

import pytest

from netkit import errors
from netkit.ipam import store as stores
from netkit.ipam.store import Lease, LeaseStore

A = ipaddress.ip_address


@pytest.fixture
def store(tmp_path: Path) -> LeaseStore:
    return LeaseStore(str(tmp_path), "net")


@pytest.mark.parametrize("name", ["", "a/b", ".", "..", "a\0b"])
def test_invalid_network_name_is_code_7(tmp_path: Path, name: str) -> None:
    with pytest.raises(errors.CNIError) as info:
        LeaseStore(str(tmp_path), name)
    assert info.value.code == errors.INVALID_CONFIG


def test_store_directory_is_data_dir_slash_network(tmp_path: Path, store: LeaseStore) -> None:
    assert store.dir == str(tmp_path / "net")
    assert store.leases() == [] and store.taken() == set()  # missing dir: empty, not an error
    with store.locked():
        pass
    assert (tmp_path / "net" / "lock").is_file()


def test_reserve_writes_json_lease_and_release_removes_it(store: LeaseStore) -> None:
    with store.locked():
        store.reserve(A("10.0.0.2"), "c1", "eth0", "boot-x")
    path = Path(store.dir) / "10.0.0.2"
    assert json.loads(path.read_text()) == {"containerID": "c1", "ifname": "eth0", "bootID": "boot-x"}
    assert store.leases() == [Lease(A("10.0.0.2"), "c1", "eth0", "boot-x")]
    assert store.taken() == {A("10.0.0.2")}
    with store.locked():
        store.release(A("10.0.0.2"))
        store.release(A("10.0.0.2"))  # already gone is fine
    assert not path.exists()
    assert store.leases() == []


def test_ipv6_lease_file_uses_canonical_name(store: LeaseStore) -> None:
    with store.locked():
        store.reserve(A("fd00:0:0::0002"), "c1", "eth0", "b")
    assert "fd00::2" in os.listdir(store.dir)
    assert store.taken() == {A("fd00::2")}


def test_reference_host_local_lease_is_read(store: LeaseStore) -> None:
    os.makedirs(store.dir)
    Path(store.dir, "10.0.0.7").write_bytes(b"containerid\r\neth0")
    Path(store.dir, "10.0.0.8").write_bytes(b"oldstyle")  # very old host-local: container id only
    Path(store.dir, "10.0.0.9").write_bytes(b"12345\r\nnet1")  # numeric id is not JSON's business
    by_addr = {lease.address: lease for lease in store.leases()}
    assert by_addr[A("10.0.0.7")] == Lease(A("10.0.0.7"), "containerid", "eth0", "")
    assert by_addr[A("10.0.0.8")].container_id == "oldstyle"
    assert by_addr[A("10.0.0.9")].owned_by("12345", "net1")


def test_non_address_files_are_ignored(store: LeaseStore) -> None:
    with store.locked():
        store.reserve(A("10.0.0.2"), "c1", "eth0", "b")
        store.set_last_reserved(0, A("10.0.0.2"))
    Path(store.dir, "10.0.0.3.tmp.999").write_text("partial")
    Path(store.dir, "README").write_text("x")
    assert store.taken() == {A("10.0.0.2")}
    assert [lease.address for lease in store.leases()] == [A("10.0.0.2")]


def test_corrupt_lease_still_blocks_its_address(store: LeaseStore) -> None:
    os.makedirs(store.dir)
    Path(store.dir, "10.0.0.4").write_bytes(b"\xff\xfe\x00garbage{")
    os.mkdir(os.path.join(store.dir, "10.0.0.5"))  # unreadable as a file
    assert store.taken() == {A("10.0.0.4"), A("10.0.0.5")}
    leases = store.leases()  # must not raise
    assert A("10.0.0.5") not in {lease.address for lease in leases}


def test_last_reserved_roundtrip_per_range_set(store: LeaseStore) -> None:
    assert store.last_reserved(0) is None
    with store.locked():
        store.set_last_reserved(0, A("10.0.0.9"))
        store.set_last_reserved(1, A("fd00::9"))
    assert store.last_reserved(0) == A("10.0.0.9")
    assert store.last_reserved(1) == A("fd00::9")
    Path(store.dir, "last_reserved_ip.0").write_text("junk")
    assert store.last_reserved(0) is None


def test_reclaim_previous_boots_releases_only_other_boot_leases(store: LeaseStore) -> None:
    with store.locked():
        store.reserve(A("10.0.0.2"), "old", "eth0", "boot-a")
        store.reserve(A("10.0.0.3"), "new", "eth0", "boot-b")
    Path(store.dir, "10.0.0.4").write_bytes(b"ref\r\neth0")
    with store.locked():
        stale = store.reclaim_previous_boots("boot-b")
    assert [lease.address for lease in stale] == [A("10.0.0.2")]
    assert store.taken() == {A("10.0.0.3"), A("10.0.0.4")}


def test_reclaim_runs_once_per_boot(store: LeaseStore) -> None:
    with store.locked():
        assert store.reclaim_previous_boots("boot-a") == []
        store.reserve(A("10.0.0.2"), "c", "eth0", "boot-a")
        assert store.reclaim_previous_boots("boot-a") == []
        assert [lease.address for lease in store.reclaim_previous_boots("boot-b")] == [A("10.0.0.2")]
    assert store.taken() == set()


def test_current_boot_id_override_and_kernel_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETKIT_BOOT_ID", "boot-test")
    assert stores.current_boot_id() == "boot-test"
    monkeypatch.delenv("NETKIT_BOOT_ID")
    kernel = stores.current_boot_id()
    assert kernel and kernel != "boot-test"


def test_unusable_data_dir_is_code_5(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    store = LeaseStore(str(tmp_path / "file" / "sub"), "net")
    with pytest.raises(errors.CNIError) as info:
        with store.locked():
            pass
    assert info.value.code == errors.IO_FAILURE


def _hints(store: LeaseStore) -> list[str]:
    return sorted(n for n in os.listdir(store.dir) if n.startswith("owner."))


def test_an_attachment_finds_its_leases_through_its_hint_and_release_updates_it(store: LeaseStore) -> None:
    with store.locked():
        store.reserve(A("10.0.0.2"), "c1", "eth0", "boot-x")
        store.reserve(A("fd00::2"), "c1", "eth0", "boot-x")
        store.reserve(A("10.0.0.3"), "c2", "eth0", "boot-x")
        assert {lease.address for lease in store.owned("c1", "eth0")} == {A("10.0.0.2"), A("fd00::2")}
        assert len(_hints(store)) == 2
        store.release(A("10.0.0.2"))
        assert [lease.address for lease in store.owned("c1", "eth0")] == [A("fd00::2")]
        store.release(A("fd00::2"))
        assert store.owned("c1", "eth0") == [] and len(_hints(store)) == 1  # an empty hint goes


def test_leases_written_before_hints_existed_are_found(store: LeaseStore) -> None:
    with store.locked():
        store.reserve(A("10.0.0.2"), "c1", "eth0", "boot-x")
    for name in [*_hints(store), ".netkit-owners"]:
        if os.path.exists(os.path.join(store.dir, name)):
            os.unlink(os.path.join(store.dir, name))
    (Path(store.dir) / "10.0.0.9").write_text("ref-ctr\r\neth0")  # the reference's: no hint, by design
    with store.locked():
        assert [lease.address for lease in store.owned("c1", "eth0")] == [A("10.0.0.2")]
        assert store.owned("ref-ctr", "eth0") == []
    assert len(_hints(store)) == 1


def test_a_hint_naming_an_address_now_held_by_another_is_not_believed(store: LeaseStore) -> None:
    with store.locked():
        store.owned("c0", "eth0")  # indexes the (empty) directory
        store.reserve(A("10.0.0.2"), "c1", "eth0", "boot-x")
        os.unlink(os.path.join(store.dir, "10.0.0.2"))  # gone without its hint being updated
        store.reserve(A("10.0.0.2"), "c2", "eth0", "boot-x")
        assert store.owned("c1", "eth0") == []
        assert [lease.address for lease in store.owned("c2", "eth0")] == [A("10.0.0.2")]


def test_forget_all_but_keeps_only_valid_attachments_hints(store: LeaseStore) -> None:
    with store.locked():
        store.reserve(A("10.0.0.2"), "c1", "eth0", "boot-x")
        store.reserve(A("10.0.0.3"), "c2", "eth0", "boot-x")
        (Path(store.dir) / "owner.garbage").write_bytes(b"\xff")
        store.forget_all_but({("c2", "eth0")})
    assert len(_hints(store)) == 1
    with store.locked():
        assert [lease.address for lease in store.owned("c2", "eth0")] == [A("10.0.0.3")]


def test_unreserve_after_a_reserve_that_wrote_only_the_hint_leaves_nothing(store: LeaseStore) -> None:
    with store.locked():
        store.reserve(A("10.0.0.2"), "c1", "eth0", "boot-x")
        os.unlink(os.path.join(store.dir, "10.0.0.2"))  # as if the lease write had failed (full disk)
        store.unreserve(A("10.0.0.2"), "c1", "eth0")
    assert _hints(store) == [] and store.leases() == []
