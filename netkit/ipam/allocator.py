"""Choosing addresses: one per range set, round-robin, honouring requested addresses."""

from __future__ import annotations

from netkit import errors
from netkit.ipam.config import Address, IPAMConfig, Range
from netkit.ipam.store import LeaseStore
from netkit.rollback import Rollback


def _range_of(addr: Address, range_set: list[Range]) -> Range | None:
    return next((r for r in range_set if addr in r), None)


def _next_free(range_set: list[Range], last: Address | None, taken: set[Address]) -> tuple[Address, Range]:
    """The first free address after ``last``, wrapping around the range set once."""
    start = next((i for i, r in enumerate(range_set) if last is not None and last in r), 0)
    order = range_set[start:] + range_set[:start]
    resume = int(last) + 1 if last is not None and _range_of(last, range_set) is not None else None
    for pass_no, rng in enumerate(order + order[:1]):
        first = type(rng.start)(resume) if pass_no == 0 and resume is not None and resume <= int(rng.end) else None
        for addr in rng.addresses(first):
            if addr not in taken:
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
    leases = store.leases()
    taken = store.taken()
    mine = [lease.address for lease in leases if lease.owned_by(container_id, ifname)]
    left = list(requested)
    out: list[tuple[Address, Range]] = []
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
                if chosen in taken and chosen not in own:
                    raise errors.CNIError(errors.ADDRESS_UNAVAILABLE, f"requested address {chosen} is already allocated")
            elif own:
                chosen = own[0]
            else:
                chosen, _ = _next_free(range_set, store.last_reserved(index), taken)
            if chosen not in own:
                store.reserve(chosen, container_id, ifname, boot_id)
                undo.push(store.release, chosen)
                taken.add(chosen)
            for extra in own:
                if extra != chosen:
                    store.release(extra)
            store.set_last_reserved(index, chosen)
            rng = _range_of(chosen, range_set)
            assert rng is not None
            out.append((chosen, rng))
        if left:
            raise errors.CNIError(errors.ADDRESS_UNAVAILABLE, "requested address is in no configured range",
                                  ", ".join(map(str, left)))
    return out
