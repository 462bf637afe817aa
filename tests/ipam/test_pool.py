"""The subnet pools: the first /16 that overlaps no route or network already there, in pool order."""

from __future__ import annotations

import ipaddress

import pytest

from netkit.ipam import pool

net = ipaddress.ip_network


def test_the_first_candidate_when_nothing_overlaps() -> None:
    assert pool.choose_subnet([net("10.0.0.0/8"), net("192.168.1.0/24")]) == net("172.17.0.0/16")


def test_a_route_inside_a_candidate_or_around_it_skips_that_candidate() -> None:
    taken = [net("172.17.5.0/24"), net("172.18.0.0/15")]  # inside 172.17; covers 172.18 and 172.19
    assert pool.choose_subnet(taken) == net("172.20.0.0/16")


def test_the_runtime_pool_goes_on_into_10_100_once_dockers_is_used_up() -> None:
    assert pool.choose_subnet([net("172.16.0.0/12")], pool.RUNTIME_SUBNETS) == net("10.100.0.0/16")
    with pytest.raises(pool.PoolExhausted, match="overlaps"):
        pool.choose_subnet([net("172.16.0.0/12")])
    with pytest.raises(ValueError):  # what choose_subnet has always raised
        pool.choose_subnet([net("0.0.0.0/1"), net("128.0.0.0/1")], pool.RUNTIME_SUBNETS)
