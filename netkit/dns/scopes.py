"""Which names an asker sees: every network of the asking container (aardvark-dns's and Docker's rule).

A container on several networks of one records directory resolves the names of all of them,
whichever of their gateways it asks: the resolver finds the container by the query's source
address (the address it has on the network whose gateway got the query) and answers from the
view of its networks.  A container on one network sees that network only, so names of a network
it is not on never resolve.  An address of the subnet that no attachment holds (a process the
records do not know) sees the network's own names, as before.

Built once per reload, so the query path costs one dict lookup more: ``Gate.view_for``.
"""

from __future__ import annotations

import ipaddress

from netkit.dns.answer import View
from netkit.dns.records import NetworkRecords

_CLIENTS_MAX = 4096  # remembered answers for addresses no attachment holds; full -> forgotten


class Gate:
    """One network as the sockets on its gateways see it: who may ask, and which view answers each."""

    def __init__(self, recs: NetworkRecords, known: dict[str, View], own: View) -> None:
        self.network = recs.network
        self.subnets = [ipaddress.ip_network(s, strict=False) for s in recs.subnets]
        self.own = own
        self._known = known  # the attachments' addresses -> their containers' views
        self._clients: dict[str, View | None] = dict(known)

    def view_for(self, client: str) -> View | None:
        """The view answering ``client`` (an address); None when it is not in the network's subnets."""
        try:
            return self._clients[client]
        except KeyError:
            pass
        # Parsing an address costs more than the rest of a cached answer: the verdict is kept.
        try:
            ip = ipaddress.ip_address(client.split("%")[0])
            view = self.own if any(ip in net for net in self.subnets) else None
        except ValueError:
            view = None
        if len(self._clients) >= len(self._known) + _CLIENTS_MAX:
            self._clients = dict(self._known)
        self._clients[client] = view
        return view


def gates(every: list[NetworkRecords]) -> dict[str, Gate]:
    """Each network's gate, by network name, for the records of one directory.

    One view per set of networks some container is on (containers on the same networks share it,
    with its answer cache); a network's own view is the set of that network alone.
    """
    by_name = {recs.network: recs for recs in every}
    networks_of: dict[str, set[str]] = {}
    for recs in every:
        for entry in recs.entries:
            networks_of.setdefault(entry.container_id, set()).add(recs.network)
    views: dict[tuple[str, ...], View] = {}

    def view(nets: tuple[str, ...]) -> View:
        if nets not in views:
            views[nets] = View([by_name[n] for n in nets])
        return views[nets]

    out = {}
    for recs in every:
        known = {}
        for entry in recs.entries:
            mine = view(tuple(sorted(networks_of[entry.container_id])))
            for addr in entry.addresses:
                known[str(ipaddress.ip_interface(addr).ip)] = mine
        out[recs.network] = Gate(recs, known, view((recs.network,)))
    return out
