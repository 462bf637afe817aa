"""One operation on the legacy xtables tables, through python-iptables (libiptc): the tables read
in the calling thread's network namespace, edited in memory, committed one after the other.

Atomicity: libiptc reads a whole table, edits it in memory and writes it back with one
``IPT_SO_SET_REPLACE``, so each table changes all at once or not at all.  An operation touches at
most three tables (filter, raw, then nat): every edit is made in memory first (nothing reaches the
kernel if building any rule fails), then the tables are committed one after the other, and if a
commit fails the tables committed before it get their netkit chains back from a snapshot taken
before the edit.  What the rules are is the backend's business (``iptables.py``); this module knows
rules only as ``Spec`` records.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator, NamedTuple

from netkit import errors, failpoints
from netkit.firewall import iptc_loader, xtables

_COMMENT_MAX = 256  # sizeof(xt_comment_info.comment)


class Spec(NamedTuple):
    """One rule, independent of python-iptables (comments are computed without importing it)."""

    comment: str
    target: str  # a chain name, or ACCEPT / RETURN / MASQUERADE / DNAT
    src: str = ""
    dst: str = ""
    proto: str = ""
    dport: int = 0
    ctstate: str = ""
    local: bool = False  # -m addrtype --dst-type LOCAL
    to: str = ""  # DNAT --to-destination
    iif: str = ""  # -i, "!name" negated
    oif: str = ""  # -o, "!name" negated



# Chain -> its rules before the edit (None: absent), to put back if a later commit fails.
Snapshot = dict[str, "list[Any] | None"]

_rule_cls: dict[int, Any] = {}


def _rule_class(ipt: Any, version: int = 4) -> Any:
    """iptc.Rule (Rule6 for IPv6), its target lookups confined to one table (see ``Session.rule``)."""
    if version not in _rule_cls:
        base = ipt.Rule if version == 4 else ipt.Rule6

        class Rule(base):  # type: ignore[misc,valid-type]
            def __init__(self, table: Any, entry: Any = None, chain: Any = None) -> None:
                self._netkit_tables = [table]
                super().__init__(entry, chain)

            @property
            def tables(self) -> list[Any]:
                return self._netkit_tables

        _rule_cls[version] = Rule
    return _rule_cls[version]


# python-iptables keeps one Table object per table name for the whole process: one operation at a time.
_lock = threading.RLock()


class Session:
    """The tables of one operation, read in the calling thread's network namespace.

    libiptc opens its socket when a table is read, in the namespace of the calling thread, and the
    commit goes through that socket: an operation must read and commit on one thread, inside the
    namespace (``netkit.net.netns.entered``).

    ``keep``: chains that other rules jump to (the caller's infrastructure chains), which a rollback
    empties and refills but never deletes.  ``version`` 6: the ip6tables tables (a process that
    loaded the IPv4 extensions cannot serve IPv6: see iptables6.py).
    """

    def __init__(self, ipt: Any, keep: frozenset[str] = frozenset(), version: int = 4) -> None:
        import ctypes

        self.ipt = ipt
        self.keep = keep
        self.version = version
        self.tables: dict[str, Any] = {}
        self._comment_off = ctypes.sizeof(ipt.xtables.xt_entry_match)

    def exists(self, name: str) -> bool:
        """True if table ``name`` of this family is there: reads, removals and the FORWARD check skip
        absent tables (reading one would create it)."""
        return xtables.exists(name, self.version)

    def table(self, name: str) -> Any:
        """The table, freshly read (created if absent)."""
        if name not in self.tables:
            table = (self.ipt.Table if self.version == 4 else self.ipt.Table6)(name, autocommit=False)
            table.refresh()  # python-iptables caches the object: drop an older handle, read anew here
            self.tables[name] = table
        return self.tables[name]

    def close(self) -> None:
        """Free every handle without committing."""
        for table in self.tables.values():
            with contextlib.suppress(Exception):
                table.close()
        self.tables.clear()

    # Reading.

    def rules(self, table: Any, chain: str) -> list[Any]:
        """The chain's rules as Rule objects that outlive the handle.

        python-iptables copies matches and target but points the entry header (addresses,
        protocol) into libiptc's cache, which is freed with the handle: copy it.
        """
        out = []
        entry = table.first_rule(chain)
        while entry:
            rule = self.rule(table, entry, self.ipt.Chain(table, chain))
            rule.entry = type(rule.entry).from_buffer_copy(rule.entry)
            out.append(rule)
            entry = table.next_rule(entry)
        return out

    def rule(self, table: Any, entry: Any = None, chain: Any = None) -> Any:
        """A Rule whose jump targets are looked up in ``table`` only.

        python-iptables' own Rule looks a target name up as a chain in *every* table, through
        process-wide cached Table objects: that reads (so creates) all five legacy tables in the
        namespace, and touches handles of other namespaces or already freed ones (a segfault).
        """
        return _rule_class(self.ipt, self.version)(table, entry, chain)

    def comment(self, rule: Any) -> str:
        """The rule's comment, read from the match buffer (python-iptables' getter redirects fd 1)."""
        for match in rule.matches:
            if match.name == "comment":
                raw = bytes(match.match_buf[self._comment_off:self._comment_off + _COMMENT_MAX])
                return raw.split(b"\0", 1)[0].decode(errors="replace")
        return ""

    @staticmethod
    def target(rule: Any) -> str:
        return rule.target.name if rule.target is not None else ""

    def snapshot(self, table: Any, chains: list[str]) -> Snapshot:
        """netkit's chains as they are now (None: absent), to put back if a later commit fails."""
        return {c: self.rules(table, c) if table.is_chain(c) else None for c in chains}

    # Editing (in memory, until commit).

    def build(self, table: Any, spec: Spec) -> Any:
        """A python-iptables Rule for ``table`` from a spec."""
        rule = self.rule(table)
        if spec.src:
            rule.src = spec.src
        if spec.dst:
            rule.dst = spec.dst
        if spec.iif:
            rule.in_interface = spec.iif
        if spec.oif:
            rule.out_interface = spec.oif
        if spec.proto:
            rule.protocol = spec.proto
            rule.create_match(spec.proto).dport = str(spec.dport)
        if spec.local:
            rule.create_match("addrtype").dst_type = "LOCAL"
        if spec.ctstate:
            rule.create_match("conntrack").ctstate = spec.ctstate
        rule.create_match("comment").comment = spec.comment
        target = rule.create_target(spec.target)
        if spec.to:
            target.to_destination = spec.to
        return rule

    def append(self, table: Any, chain: str, specs: list[Spec]) -> None:
        for spec in specs:
            self.ipt.Chain(table, chain).append_rule(self.build(table, spec))

    @staticmethod
    def ensure_chain(table: Any, chain: str) -> None:
        if not table.is_chain(chain):
            table.create_chain(chain)

    def ensure_jump(self, table: Any, parent: str, spec: Spec, position: int | None = None) -> None:
        """Exactly one jump from ``parent`` to ``spec.target``, netkit's own (told by its comment),
        at ``position`` (None: anywhere, appended if new): other jumps there to the same chain (a
        copy, an older form) are deleted."""
        chain = self.ipt.Chain(table, parent)
        rules = self.rules(table, parent)
        jumps = [r for r in rules if self.target(r) == spec.target]
        ours = next((r for r in jumps if self.comment(r) == spec.comment), None)
        if ours is not None and position is not None and rules.index(ours) != position:
            ours = None  # in the wrong place: re-inserted below
        for other in jumps:
            if other is not ours:
                chain.delete_rule(other)
        if ours is None:
            if position is not None:
                chain.insert_rule(self.build(table, spec), position)
            else:
                chain.append_rule(self.build(table, spec))

    def unconditional(self, rule: Any) -> bool:
        """True if the rule matches every packet: no address, interface, protocol or fragment test,
        nothing inverted, and no match but a comment."""
        if self.version == 6:
            ip6 = rule.entry.ipv6
            return (rule.src == rule.dst == "::/0" and rule.in_interface is None and rule.out_interface is None
                    and not ip6.invflags and ip6.proto == 0
                    and all(m.name == "comment" for m in rule.matches))
        ip = rule.entry.ip
        return (rule.src == rule.dst == "0.0.0.0/0.0.0.0" and rule.in_interface is None
                and rule.out_interface is None and rule.protocol == "ip" and not ip.invflags
                and not ip.flags & ip.IPT_F_FRAG and all(m.name == "comment" for m in rule.matches))

    def _fate(self, filt: Any, chain: str, seen: set[str]) -> str | None:
        """What the chain's unconditional rules do with a packet no other rule took: "ACCEPT", a
        description of the DROP/REJECT rule that decides it, or None (it falls through the chain).

        Jumps to chains of others are followed (each once); netkit's own NETKIT-* chains (see
        iptables.py) are not (their rules are all conditional, and NETKIT-FORWARD holds two per
        attachment).
        """
        for rule in self.rules(filt, chain):
            if not self.unconditional(rule):
                continue
            target = self.target(rule)
            if target in ("DROP", "REJECT"):
                return f"unconditional {target} in {chain}"
            if target == "ACCEPT":
                return "ACCEPT"
            if target == "RETURN":
                return None
            if target not in seen and not target.startswith("NETKIT-") and filt.is_chain(target):
                fate = self._fate(filt, target, seen | {target})
                if fate is not None or rule.target.goto:  # falling off a goto's chain returns from this one
                    return fate
        return None

    def forward_drops(self, filt: Any) -> str | None:
        """Why filter FORWARD drops what no rule accepts (policy DROP, or an unconditional DROP or
        REJECT rule reached from it), or None when it accepts by default."""
        fate = self._fate(filt, "FORWARD", {"FORWARD"})
        if fate == "ACCEPT":
            return None
        if fate is not None:
            return fate
        return "policy DROP" if filt.get_policy("FORWARD")[0].name == "DROP" else None

    def jump_index(self, table: Any, parent: str, target: str) -> int | None:
        """Index of the first jump from ``parent`` to ``target``, or None."""
        return next((i for i, r in enumerate(self.rules(table, parent)) if self.target(r) == target), None)

    def jump_numbers(self, table: Any, parent: str, targets: set[str]) -> list[int]:
        """Positions (0-based) of the rules of ``parent`` that jump to one of ``targets``.

        Reads only each rule's target name from libiptc: building python-iptables Rule objects for
        every attachment's jump cost ~3 ms each, seconds at 500 attachments.
        """
        out = []
        entry, number = table.first_rule(parent), 0
        while entry:
            name = table.get_target(entry)
            if name is not None and name.decode(errors="replace") in targets:
                out.append(number)
            entry, number = table.next_rule(entry), number + 1
        return out

    def delete_jumps(self, table: Any, parent: str, targets: set[str]) -> None:
        """Delete the rules of ``parent`` that jump to one of ``targets``, by number."""
        for number in reversed(self.jump_numbers(table, parent, targets)):
            if table._iptc.iptc_delete_num_entry(parent.encode(), number, table._handle) != 1:
                raise self.ipt.IPTCError(f"can't delete rule {number} of {parent}: {table.strerror()}")

    def restore(self, table: Any, snap: Snapshot) -> None:
        """Put netkit's chains of an already committed table back as in ``snap``, and commit."""
        table.refresh()
        parents = [c for c in snap if c in self.keep]
        for parent in parents:  # emptied first: then nothing refers to the group chains
            if table.is_chain(parent):
                table.flush_entries(parent)
            elif snap[parent] is not None:
                table.create_chain(parent)
        for chain, rules in snap.items():
            if chain in self.keep:
                continue
            present = table.is_chain(chain)
            if present:
                table.flush_entries(chain)
            if rules is None:
                if present:
                    table.delete_chain(chain)
                continue
            if not present:
                table.create_chain(chain)
            for rule in rules:
                self.ipt.Chain(table, chain).append_rule(rule)
        for parent in parents:
            for rule in snap[parent] or []:
                self.ipt.Chain(table, parent).append_rule(rule)
        table.commit()

    def commit(self, touched: list[tuple[Any, Snapshot]]) -> None:
        """Commit each touched table in order; if one fails, restore those committed before it."""
        done: list[tuple[Any, Snapshot]] = []
        for table, snap in touched:
            if done:
                failpoints.hit("iptables.between-commits")
            try:
                table.commit()
            except self.ipt.IPTCError as exc:
                problems = []
                for earlier, earlier_snap in reversed(done):
                    try:
                        self.restore(earlier, earlier_snap)
                    except Exception as undo_exc:  # report it, keep undoing the others
                        problems.append(f"restoring {earlier.name}: {undo_exc}")
                detail = f"{table.name}: {exc}" + (f"; rollback incomplete: {'; '.join(problems)}" if problems else "")
                raise errors.CNIError(errors.KERNEL, "iptables refused the change", detail) from None
            done.append((table, snap))


@contextlib.contextmanager
def session(keep: frozenset[str] = frozenset(), version: int = 4) -> Iterator[Session]:
    """One operation on the tables (one at a time in the process); python-iptables' refusals
    become a CNI error, and every handle is freed without committing what was not committed."""
    ipt = iptc_loader.load()
    with _lock:
        session = Session(ipt, keep, version)
        try:
            yield session
        except (ipt.IPTCError, ipt.XTablesError, ValueError) as exc:
            raise errors.CNIError(errors.KERNEL, "iptables refused the change", str(exc)) from None
        finally:
            session.close()

