"""Choosing addresses: one per range set, round-robin, honouring requested addresses."""

from __future__ import annotations

from typing import Callable

from netkit import errors, failpoints
from netkit.ipam.config import Address, IPAMConfig, Range
from netkit.ipam.store import LeaseStore
from netkit.rollback import Rollback


def _range_of(addr: Address, range_set: list[Range]) -> Range | None:
    return next((r for r in range_set if addr in r), None)


def _next_free(range_set: list[Range], last: Address | None, taken: Callable[[Address], bool]) -> tuple[Address, Range]:
    """The first free address after ``last``, walking the range set in order and wrapping once.

    Like host-local's iterator: after a range's end comes the next range's start, so an address
    freed a moment ago is the last to be handed out again.
    """
    pos = next((i for i, r in enumerate(range_set) if last is not None and last in r), None)
    order: list[tuple[Range, Address | None]] = [(r, None) for r in range_set]
    if pos is not None and last is not None:
        current = range_set[pos]
        order = [(r, None) for r in range_set[pos + 1:] + range_set[:pos]] + [(current, None)]
        if int(last) < int(current.end):
            order.insert(0, (current, type(last)(int(last) + 1)))
    for rng, first in order:
        for addr in rng.addresses(first):
            if not taken(addr):
                return addr, rng
    raise errors.CNIError(errors.POOL_EXHAUSTED, "no free addresses in range set",
                          ", ".join(str(r.subnet) for r in range_set))


def allocate(store: LeaseStore, cfg: IPAMConfig, container_id: str, ifname: str,
             requested: list[Address], boot_id: str) -> list[tuple[Address, Range]]:
    """Reserve one address per range set for the attachment; call with the store locked.

    An attachment that already holds an address in a range set keeps it (a repeated ADD does not
    leak a second lease).  A requested address must lie in a range and be free or already its own.
    """
    store.reclaim_previous_boots(boot_id)
    # Asked per candidate (usually the first is free) rather than listing every lease's address.
    taken = store.is_taken
    mine = [lease.address for lease in store.owned(container_id, ifname)]
    left = list(requested)
    out: list[tuple[Address, Range]] = []
    superseded: list[Address] = []
    with Rollback() as undo:
        for index, range_set in enumerate(cfg.range_sets):
            wanted = [a for a in left if _range_of(a, range_set)]
            if len(wanted) > 1:
                raise errors.CNIError(errors.ADDRESS_UNAVAILABLE, "more than one address requested in one range set",
                                      ", ".join(map(str, wanted)))
            own = [a for a in mine if _range_of(a, range_set)]
            if wanted:
                chosen = wanted[0]
                left.remove(chosen)
            elif own:
                chosen = own[0]
            else:
                chosen, _ = _next_free(range_set, store.last_reserved(index), taken)
            rng = _range_of(chosen, range_set)
            assert rng is not None  # every candidate above was drawn from this range set
            if chosen not in own:
                if chosen == rng.gateway:
                    raise errors.CNIError(errors.ADDRESS_UNAVAILABLE, f"requested address {chosen} is the gateway")
                if taken(chosen):
                    raise errors.CNIError(errors.ADDRESS_UNAVAILABLE, f"requested address {chosen} is already allocated")
                undo.push(store.unreserve, chosen, container_id, ifname)
                store.reserve(chosen, container_id, ifname, boot_id)
                failpoints.hit("ipam.add.after-reserve")
            superseded += [a for a in own if a != chosen]
            store.set_last_reserved(index, chosen)
            out.append((chosen, rng))
        if left:
            raise errors.CNIError(errors.ADDRESS_UNAVAILABLE, "requested address is in no configured range",
                                  ", ".join(map(str, left)))
    # Only once every range set succeeded: an address this attachment held but no longer wants.
    for addr in superseded:
        store.release(addr)
    return out
