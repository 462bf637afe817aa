"""Choosing addresses: one per range set, round-robin, requested addresses, rollback on failure."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from netkit import errors
from netkit.ipam import allocator, config
from netkit.ipam.store import LeaseStore

A = ipaddress.ip_address
BOOT = "boot-1"


def _cfg(*range_sets: list[dict[str, Any]]) -> config.IPAMConfig:
    return config.parse({"ipam": {"ranges": list(range_sets)}})


@pytest.fixture
def store(tmp_path: Path) -> LeaseStore:
    return LeaseStore(str(tmp_path), "net")


def _alloc(store: LeaseStore, cfg: config.IPAMConfig, cid: str, ifname: str = "eth0",
           requested: list[str] | None = None) -> list[str]:
    with store.locked():
        got = allocator.allocate(store, cfg, cid, ifname, [A(r) for r in requested or []], BOOT)
    return [str(addr) for addr, _ in got]


def _release(store: LeaseStore, addr: str) -> None:
    with store.locked():
        store.release(A(addr))


def test_first_address_skips_gateway(store: LeaseStore) -> None:
    assert _alloc(store, _cfg([{"subnet": "10.0.0.0/24"}]), "c1") == ["10.0.0.2"]


def test_explicit_gateway_in_the_middle_is_skipped(store: LeaseStore) -> None:
    cfg = _cfg([{"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.10", "rangeEnd": "10.0.0.12",
                 "gateway": "10.0.0.11"}])
    assert [_alloc(store, cfg, f"c{i}")[0] for i in range(2)] == ["10.0.0.10", "10.0.0.12"]
    with pytest.raises(errors.CNIError) as info:
        _alloc(store, cfg, "c9")
    assert info.value.code == errors.POOL_EXHAUSTED


def test_round_robin_does_not_reuse_freed_address_at_once(store: LeaseStore) -> None:
    cfg = _cfg([{"subnet": "10.0.0.0/24"}])
    assert _alloc(store, cfg, "c1") == ["10.0.0.2"]
    assert _alloc(store, cfg, "c2") == ["10.0.0.3"]
    _release(store, "10.0.0.3")
    assert _alloc(store, cfg, "c3") == ["10.0.0.4"]


def test_round_robin_wraps_to_freed_addresses(store: LeaseStore) -> None:
    cfg = _cfg([{"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.10", "rangeEnd": "10.0.0.12"}])
    assert [_alloc(store, cfg, f"c{i}")[0] for i in range(3)] == ["10.0.0.10", "10.0.0.11", "10.0.0.12"]
    _release(store, "10.0.0.11")
    assert _alloc(store, cfg, "c4") == ["10.0.0.11"]


def test_round_robin_moves_across_ranges_of_a_set(store: LeaseStore) -> None:
    cfg = _cfg([{"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.10", "rangeEnd": "10.0.0.11"},
                {"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "rangeEnd": "10.1.0.10"}])
    got = [_alloc(store, cfg, f"c{i}")[0] for i in range(3)]
    assert got == ["10.0.0.10", "10.0.0.11", "10.1.0.10"]
    _release(store, "10.0.0.10")
    assert _alloc(store, cfg, "c9") == ["10.0.0.10"]


def test_round_robin_advances_to_the_next_range_after_the_end_of_one(store: LeaseStore) -> None:
    # host-local's iterator moves from a range's rangeEnd to the next range's rangeStart; it does not
    # rescan the range it just finished, which would hand back an address freed a moment ago.
    cfg = _cfg([{"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.10", "rangeEnd": "10.0.0.12"},
                {"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.20", "rangeEnd": "10.1.0.21"}])
    got = [_alloc(store, cfg, f"c{i}")[0] for i in range(5)]
    assert got == ["10.0.0.10", "10.0.0.11", "10.0.0.12", "10.1.0.20", "10.1.0.21"]
    _release(store, "10.1.0.21")  # the last one handed out
    _release(store, "10.0.0.10")
    assert _alloc(store, cfg, "c9") == ["10.0.0.10"]


def test_round_robin_position_survives_a_new_store_object(tmp_path: Path) -> None:
    cfg = _cfg([{"subnet": "10.0.0.0/24"}])
    assert _alloc(LeaseStore(str(tmp_path), "net"), cfg, "c1") == ["10.0.0.2"]
    _release(LeaseStore(str(tmp_path), "net"), "10.0.0.2")
    assert _alloc(LeaseStore(str(tmp_path), "net"), cfg, "c2") == ["10.0.0.3"]


def test_dual_stack_gets_one_address_per_set(store: LeaseStore) -> None:
    cfg = _cfg([{"subnet": "10.0.0.0/24"}], [{"subnet": "fd00::/64"}])
    assert _alloc(store, cfg, "c1") == ["10.0.0.2", "fd00::2"]
    assert store.taken() == {A("10.0.0.2"), A("fd00::2")}


def test_exhausted_second_set_rolls_back_the_first(store: LeaseStore) -> None:
    cfg = _cfg([{"subnet": "fd00::/64"}], [{"subnet": "10.0.0.0/30"}])
    assert _alloc(store, cfg, "c1") == ["fd00::2", "10.0.0.2"]
    with pytest.raises(errors.CNIError) as info:
        _alloc(store, cfg, "c2")
    assert info.value.code == errors.POOL_EXHAUSTED
    assert store.taken() == {A("fd00::2"), A("10.0.0.2")}
    assert all(lease.container_id == "c1" for lease in store.leases())


def test_requested_address_is_used(store: LeaseStore) -> None:
    cfg = _cfg([{"subnet": "10.0.0.0/24"}], [{"subnet": "fd00::/64"}])
    assert _alloc(store, cfg, "c1", requested=["10.0.0.77", "fd00::77"]) == ["10.0.0.77", "fd00::77"]


def test_requested_address_taken_by_another_is_104(store: LeaseStore) -> None:
    cfg = _cfg([{"subnet": "10.0.0.0/24"}])
    _alloc(store, cfg, "c1", requested=["10.0.0.50"])
    with pytest.raises(errors.CNIError) as info:
        _alloc(store, cfg, "c2", requested=["10.0.0.50"])
    assert info.value.code == errors.ADDRESS_UNAVAILABLE
    assert [lease.container_id for lease in store.leases()] == ["c1"]


def test_requested_address_outside_ranges_is_104_and_leaves_nothing(store: LeaseStore) -> None:
    cfg = _cfg([{"subnet": "10.0.0.0/24"}], [{"subnet": "fd00::/64"}])
    for bad in (["10.5.0.1"], ["fd01::1"], ["10.0.0.0"], ["10.0.0.255"]):
        with pytest.raises(errors.CNIError) as info:
            _alloc(store, cfg, "c1", requested=bad)
        assert info.value.code == errors.ADDRESS_UNAVAILABLE, bad
        assert store.taken() == set(), bad


def test_requested_gateway_is_refused(store: LeaseStore) -> None:
    # host-local refuses "requested ip is subnet's gateway"; the gateway is the host's address.
    cfg = _cfg([{"subnet": "10.0.0.0/24"}])
    with pytest.raises(errors.CNIError) as info:
        _alloc(store, cfg, "c1", requested=["10.0.0.1"])
    assert info.value.code == errors.ADDRESS_UNAVAILABLE
    assert store.taken() == set()


def test_two_requested_addresses_in_one_set_is_104(store: LeaseStore) -> None:
    cfg = _cfg([{"subnet": "10.0.0.0/24"}])
    with pytest.raises(errors.CNIError) as info:
        _alloc(store, cfg, "c1", requested=["10.0.0.5", "10.0.0.6"])
    assert info.value.code == errors.ADDRESS_UNAVAILABLE


def test_repeated_allocation_keeps_the_address(store: LeaseStore) -> None:
    cfg = _cfg([{"subnet": "10.0.0.0/24"}], [{"subnet": "fd00::/64"}])
    first = _alloc(store, cfg, "c1")
    _alloc(store, cfg, "c2")
    assert _alloc(store, cfg, "c1") == first
    assert len(store.taken()) == 4
    assert _alloc(store, cfg, "c1", ifname="net1") != first  # another interface is another attachment


def test_repeated_allocation_with_new_requested_address_moves_the_lease(store: LeaseStore) -> None:
    cfg = _cfg([{"subnet": "10.0.0.0/24"}])
    assert _alloc(store, cfg, "c1") == ["10.0.0.2"]
    assert _alloc(store, cfg, "c1", requested=["10.0.0.9"]) == ["10.0.0.9"]
    assert store.taken() == {A("10.0.0.9")}


def test_corrupt_and_reference_leases_are_not_handed_out(store: LeaseStore) -> None:
    import os
    os.makedirs(store.dir)
    Path(store.dir, "10.0.0.2").write_bytes(b"\x00\xff{{{")
    Path(store.dir, "10.0.0.3").write_bytes(b"refcontainer\r\neth0")
    cfg = _cfg([{"subnet": "10.0.0.0/24"}])
    assert _alloc(store, cfg, "c1") == ["10.0.0.4"]


def test_allocate_reclaims_leases_of_a_previous_boot(store: LeaseStore) -> None:
    cfg = _cfg([{"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.2", "rangeEnd": "10.0.0.2"}])
    with store.locked():
        store.reserve(A("10.0.0.2"), "before-reboot", "eth0", "boot-0")
    assert _alloc(store, cfg, "c1") == ["10.0.0.2"]
    assert [lease.container_id for lease in store.leases()] == ["c1"]
