"""The legacy iptables backend: the nftables backend's layout, in the xtables ``nat`` table (IPv4).

Layout (chain names and rule comments are exactly those of the nftables backend, so CHECK, GC and
conflict detection read both alike):

    raw PREROUTING     -j NETKIT-LOCALNET  (first; with published ports)  ! -i lo -d 127.0.0.0/8 -j DROP
    nat PREROUTING     -m addrtype --dst-type LOCAL -j NETKIT-HOSTPORTS     (exactly once)
    nat OUTPUT         -m addrtype --dst-type LOCAL -j NETKIT-HOSTPORTS     (exactly once)
    nat POSTROUTING    -j NETKIT-MASQ                                       (exactly once)
    NETKIT-HOSTPORTS   -j NK-D-...                      per attachment with published ports
    NETKIT-MASQ        -s <container> -j NK-M-...       per ipMasq attachment,
                       -m conntrack --ctstate DNAT -j NK-D-...-S   per attachment with published ports

iptables has no ``ct status dnat`` match (``--ctstatus`` knows only EXPECTED, SEEN_REPLY, ASSURED,
CONFIRMED); the equivalent is the conntrack match's virtual state ``--ctstate DNAT`` (the original
destination differs from the reply source).

IPv4 only: the container's IPv6 addresses (and IPv6 hostIP mappings) are skipped, and
``expected_comments`` leaves their rules out too.  python-iptables cannot serve both families in one
process: an extension library registers its targets for the family current when it is first
loaded, and DNAT/MASQUERADE live in libxt_NAT.so, so the second family gets "can't find target".

The legacy FORWARD chain is in the same tables netkit writes, so instead of reporting it
(``forward_blockers``), ``apply`` lets the attachment's own traffic through when filter FORWARD
drops by default (``_Session.forward_drops``): its policy is DROP (Docker's), or an unconditional
DROP or REJECT rule decides what nothing accepted before it (RHEL's iptables-services, firewalld's
iptables backend, a chain of one's own that FORWARD jumps to).  A ``NETKIT-FORWARD`` chain jumped
from the top of FORWARD (after netkit's isolation) then gets accept rules for the container
address (published ports: DNAT'd flows in, replies out; ipMasq: outbound and its replies),
commented ``<group chain>/<what>/<address>`` and removed with the group.  A FORWARD that accepts by
default gets none: a conditional DROP there is the admin's deliberate filter, not a default, and
stays in force.  What this backend cannot let through is another stack's drop: an nft base forward
chain whose policy drops (Docker on iptables-nft) - ``forward_blockers`` reports those.
Known limit: the accepts are made at ADD, so a FORWARD turned to drop after an attachment's ADD
(another firewall started later) drops that attachment's traffic until its next ADD.

Atomicity: libiptc reads a whole table, edits it in memory and writes it back with one
``IPT_SO_SET_REPLACE``, so each table changes all at once or not at all.  An operation touches at
most two tables (filter, then nat): every edit is made in memory first (nothing reaches the kernel
if building any rule fails), then the tables are committed one after the other, and if the nat
commit fails the filter table's netkit chains are put back from a snapshot taken before the edit.
The base-chain jumps and the NETKIT-* chains are infrastructure and stay, even empty, as the
nftables backend's base chains do.

python-iptables is imported lazily, with environment defaults that spare it dozens of child
processes (~300 ms -> ~40 ms).
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import os
import sys
import sysconfig
import threading
import warnings
from typing import Any, Iterator, NamedTuple

from netkit import errors, failpoints
from netkit.firewall import xtables
from netkit.firewall.model import DNAT, MASQ, NetworkRules, RuleGroup
from netkit.net import sysctl

HOSTPORTS = "NETKIT-HOSTPORTS"
MASQUERADE = "NETKIT-MASQ"
FORWARD = "NETKIT-FORWARD"
ISOLATION = "NETKIT-ISOLATION"
ISOLATION2 = "NETKIT-ISOLATION-2"
LOCALNET = "NETKIT-LOCALNET"
# raw PREROUTING, before any DNAT: nothing from outside may address 127/8.  A port published on
# 127.0.0.1 is DNAT'd before the kernel's martian check, and the bridge's route_localnet (set for
# that hairpin) would let containers reach the host's loopback-only services (CVE-2020-8558's class).
_INFRA = (HOSTPORTS, MASQUERADE, FORWARD, ISOLATION, ISOLATION2)
_MULTICAST = "224.0.0.0/4"
_LOOPBACK = "127.0.0.0/8"
_COMMENT_MAX = 256  # sizeof(xt_comment_info.comment)


class _Spec(NamedTuple):
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


_LOCALNET_GUARD = _Spec("netkit/localnet", "DROP", dst="127.0.0.0/8", iif="!lo")


# (base chain, match destination type LOCAL, infra chain): the jumps that must exist exactly once.
_BASE_JUMPS = (("PREROUTING", True, HOSTPORTS), ("OUTPUT", True, HOSTPORTS), ("POSTROUTING", False, MASQUERADE))
_Snapshot = dict[str, "list[Any] | None"]
# The snapshot of the table committed last: a snapshot is only restored when a later commit
# fails, and copying every attachment's jump rules out of nat cost seconds at 500 attachments.
_LAST: _Snapshot = {}


def _ipv4(group: RuleGroup) -> RuleGroup:
    """The group without its IPv6 addresses (their rules are skipped: see the module docstring)."""
    return group._replace(addresses=[a for a in group.addresses if a.version == 4])


def _dnat_rules(group: RuleGroup) -> list[_Spec]:
    out = []
    target = group.addresses[-1] if group.addresses else None  # the last one, as the nftables backend picks
    for m in group.mappings:
        if target is None or (m.host_ip and ipaddress.ip_address(m.host_ip).version != 4):
            continue
        out.append(_Spec(m.label(), "DNAT", dst=m.host_ip, proto=m.protocol, dport=m.host_port,
                         to=f"{target.ip}:{m.container_port}"))
    return out


def _snat_rules(group: RuleGroup) -> list[_Spec]:
    out = []
    for addr in group.addresses:
        ip = str(addr.ip)
        if group.masq_all:
            out.append(_Spec(f"masq-all/{ip}", "MASQUERADE", dst=ip, ctstate="DNAT"))
        elif group.snat:
            # Hairpin and same-bridge clients (replies would bypass the host) and host-local
            # clients using 127.0.0.1 (the container cannot answer a loopback source).
            for src in (str(addr.network), _LOOPBACK):
                out.append(_Spec(f"snat/{src}->{ip}", "MASQUERADE", src=src, dst=ip, ctstate="DNAT"))
    return out


def _masq_rules(group: RuleGroup) -> list[_Spec]:
    out = []
    for addr in group.addresses:
        for dst in (str(addr.network), _MULTICAST):
            out.append(_Spec(f"keep/{dst}", "RETURN", dst=dst))
        out.append(_Spec(f"masq/{addr.ip}", "MASQUERADE"))
    return out


def _expected(group: RuleGroup) -> dict[str, list[_Spec]]:
    """Chain -> its rules, in the nftables backend's order (``group`` already IPv4-only)."""
    if group.kind == MASQ:
        return {group.chain: _masq_rules(group)}
    return {group.chain: _dnat_rules(group), group.chain + "-S": _snat_rules(group)}


def _jumps(group: RuleGroup) -> list[tuple[str, _Spec]]:
    """(infra chain, jump rule) for each chain of the group."""
    if group.kind == MASQ:
        return [(MASQUERADE, _Spec(group.chain, group.chain, src=str(a.ip))) for a in group.addresses]
    return [(HOSTPORTS, _Spec(group.chain, group.chain)),
            (MASQUERADE, _Spec(group.chain + "-S", group.chain + "-S", ctstate="DNAT"))]


def _accepts(group: RuleGroup) -> list[_Spec]:
    """NETKIT-FORWARD rules letting the attachment's traffic past a FORWARD that drops by default."""
    out = []
    for addr in group.addresses:
        ip, tag = str(addr.ip), group.chain
        if group.kind == DNAT and group.mappings:
            out += [_Spec(f"{tag}/dnat/{ip}", "ACCEPT", dst=ip, ctstate="DNAT"),
                    _Spec(f"{tag}/reply/{ip}", "ACCEPT", src=ip, ctstate="RELATED,ESTABLISHED")]
        elif group.kind == MASQ:
            out += [_Spec(f"{tag}/out/{ip}", "ACCEPT", src=ip),
                    _Spec(f"{tag}/in/{ip}", "ACCEPT", dst=ip, ctstate="RELATED,ESTABLISHED")]
    return out


def _accept_owner(comment: str) -> str:
    """The group chain an accept rule belongs to (its comment's first field)."""
    return comment.split("/", 1)[0]


# --- loading python-iptables ----------------------------------------------------------------------

_LIB_DIRS_FALLBACK = ("/usr/lib64", "/lib64", "/usr/lib", "/lib", "/usr/local/lib")
_SONAMES = {"c": "libc.so.6", "ip4tc": "libip4tc.so.2", "ip6tc": "libip6tc.so.2"}
_iptc: Any = None
_load_lock = threading.Lock()


def _lib_dirs() -> list[str]:
    """Library directories, the interpreter's multiarch ones first."""
    arch = sysconfig.get_config_var("MULTIARCH") or getattr(sys.implementation, "_multiarch", "") or ""
    dirs = [f"/usr/lib/{arch}", f"/lib/{arch}"] if arch else []
    return dirs + list(_LIB_DIRS_FALLBACK)


def _find_dir(filename: str, dirs: list[str]) -> str | None:
    return next((d for d in dirs if os.path.exists(os.path.join(d, filename))), None)


def _env_defaults(env: Any = os.environ) -> None:
    """Point python-iptables at the libraries directly (setdefault: an operator's values win).

    Without these it runs ``ldconfig``/``gcc`` dozens of times and imports setuptools' distutils.
    """
    dirs = _lib_dirs()
    xt_dir = _find_dir("libxtables.so.12", dirs)
    if xt_dir is not None:
        env.setdefault("PYTHON_IPTABLES_XTABLES_VERSION", "12")
        if os.path.isdir(os.path.join(xt_dir, "xtables")):
            env.setdefault("XTABLES_LIBDIR", os.path.join(xt_dir, "xtables"))
    libdirs = [d for d in (_find_dir("libip4tc.so.2", dirs), _find_dir("libip6tc.so.2", dirs)) if d]
    spec = importlib.util.find_spec("iptc")  # locates, does not import
    if spec is not None and spec.origin:
        libdirs.append(os.path.dirname(os.path.dirname(spec.origin)))  # libxtwrapper sits beside the package
    if libdirs:
        env.setdefault("IPTABLES_LIBDIR", ":".join(dict.fromkeys(libdirs)))
    env.setdefault("SETUPTOOLS_USE_DISTUTILS", "stdlib")


@contextlib.contextmanager
def _quick_import() -> Iterator[None]:
    """While importing iptc, spare it two kinds of work.

    - setuptools' distutils: its ``.pth`` shim was installed when the interpreter started, before
      SETUPTOOLS_USE_DISTUTILS=stdlib could be set here, and importing setuptools' copy costs
      ~190 ms.  With the variable at ``stdlib``, the shim is taken out for the import.
    - ``ctypes.util.find_library`` for libc, libip4tc and libip6tc (``ldconfig -p`` each time,
      ~17 ms in all): answered from the library directories; anything else, or anything not
      found there, goes to the real function.
    Both are put back afterwards.
    """
    import ctypes.util

    shims = []
    if os.environ.get("SETUPTOOLS_USE_DISTUTILS") == "stdlib":
        shims = [(i, f) for i, f in enumerate(sys.meta_path) if type(f).__module__ == "_distutils_hack"]
    for _, finder in shims:
        sys.meta_path.remove(finder)
    real = ctypes.util.find_library
    dirs = _lib_dirs()

    def quick(name: str) -> str | None:
        soname = _SONAMES.get(name)
        if soname and _find_dir(soname, dirs):
            return soname
        return real(name)

    ctypes.util.find_library = quick
    try:
        yield
    finally:
        ctypes.util.find_library = real
        for i, finder in shims:
            sys.meta_path.insert(i, finder)


def _load() -> Any:
    """The ``iptc`` module, imported on first use."""
    global _iptc
    with _load_lock:
        if _iptc is None:
            _env_defaults()
            try:
                with warnings.catch_warnings(), _quick_import():
                    warnings.simplefilter("ignore", DeprecationWarning)  # stdlib distutils, 3.11
                    import iptc
            except Exception as exc:  # a missing library surfaces as OSError, AttributeError, XTablesError
                raise errors.CNIError(errors.NOT_AVAILABLE, "python-iptables cannot load the xtables libraries",
                                      f"{exc}; install Debian's libxtables12, libip4tc2 and libip6tc2") from None
            _iptc = iptc
    return _iptc


_rule_cls: Any = None


def _rule_class(ipt: Any) -> Any:
    """iptc.Rule, its target lookups confined to one table (see ``_Session.rule``)."""
    global _rule_cls
    if _rule_cls is None:

        class Rule(ipt.Rule):  # type: ignore[misc,name-defined]
            def __init__(self, table: Any, entry: Any = None, chain: Any = None) -> None:
                self._netkit_tables = [table]
                super().__init__(entry, chain)

            @property
            def tables(self) -> list[Any]:
                return self._netkit_tables

        _rule_cls = Rule
    return _rule_cls


# --- working on tables -----------------------------------------------------------------------------

# python-iptables keeps one Table object per table name for the whole process: one operation at a time.
_lock = threading.RLock()


class _Session:
    """The tables of one operation, read in the calling thread's network namespace.

    libiptc opens its socket when a table is read, in the namespace of the calling thread, and the
    commit goes through that socket: an operation must read and commit on one thread, inside the
    namespace (``netkit.net.netns.entered``).
    """

    def __init__(self, ipt: Any) -> None:
        import ctypes

        self.ipt = ipt
        self.tables: dict[str, Any] = {}
        self._comment_off = ctypes.sizeof(ipt.xtables.xt_entry_match)

    # Reads, removals and the FORWARD check skip absent tables: reading one would create it.
    exists = staticmethod(xtables.exists)

    def table(self, name: str) -> Any:
        """The table, freshly read (created if absent)."""
        if name not in self.tables:
            table = self.ipt.Table(name, autocommit=False)
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
        return _rule_class(self.ipt)(table, entry, chain)

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

    @staticmethod
    def group_chains(table: Any) -> list[str]:
        return [c.name for c in table.chains if c.name.startswith("NK-")]

    def snapshot(self, table: Any, chains: list[str]) -> _Snapshot:
        """netkit's chains as they are now (None: absent), to put back if a later commit fails."""
        return {c: self.rules(table, c) if table.is_chain(c) else None for c in chains}

    # Editing (in memory, until commit).

    def build(self, table: Any, spec: _Spec) -> Any:
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

    def append(self, table: Any, chain: str, specs: list[_Spec]) -> None:
        for spec in specs:
            self.ipt.Chain(table, chain).append_rule(self.build(table, spec))

    @staticmethod
    def ensure_chain(table: Any, chain: str) -> None:
        if not table.is_chain(chain):
            table.create_chain(chain)

    def ensure_jump(self, table: Any, parent: str, spec: _Spec, position: int | None = None) -> None:
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

    @staticmethod
    def unconditional(rule: Any) -> bool:
        """True if the rule matches every packet: no address, interface, protocol or fragment test,
        nothing inverted, and no match but a comment."""
        ip = rule.entry.ip
        return (rule.src == rule.dst == "0.0.0.0/0.0.0.0" and rule.in_interface is None
                and rule.out_interface is None and rule.protocol == "ip" and not ip.invflags
                and not ip.flags & ip.IPT_F_FRAG and all(m.name == "comment" for m in rule.matches))

    def _fate(self, filt: Any, chain: str, seen: set[str]) -> str | None:
        """What the chain's unconditional rules do with a packet no other rule took: "ACCEPT", a
        description of the DROP/REJECT rule that decides it, or None (it falls through the chain).

        Jumps to chains of others are followed (each once); netkit's own NETKIT-* chains are not
        (their rules are all conditional, and NETKIT-FORWARD holds two per attachment).
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

    def localnet_guard_in_place(self) -> bool:
        """True when raw PREROUTING starts with netkit's jump to the 127/8 guard, and the guard is whole."""
        if not self.exists("raw"):
            return False
        raw = self.table("raw")
        if not raw.is_chain(LOCALNET) or [self.comment(r) for r in self.rules(raw, LOCALNET)] != ["netkit/localnet"]:
            return False
        first = self.rules(raw, "PREROUTING")[:1]
        return bool(first) and self.target(first[0]) == LOCALNET and self.comment(first[0]) == "netkit"

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

    def drop_group(self, nat: Any, chains: set[str]) -> bool:
        """Remove these group chains and the jumps to them; True if anything was there."""
        present = sorted(c for c in chains if nat.is_chain(c))
        if not present:
            return False  # and no jump to them either: iptables refuses a jump to a missing chain
        for parent in (HOSTPORTS, MASQUERADE):
            if nat.is_chain(parent):
                for number in reversed(self.jump_numbers(nat, parent, set(present))):
                    if nat._iptc.iptc_delete_num_entry(parent.encode(), number, nat._handle) != 1:
                        raise self.ipt.IPTCError(f"can't delete rule {number} of {parent}: {nat.strerror()}")
        for chain in present:
            nat.flush_entries(chain)
            nat.delete_chain(chain)
        return True

    def drop_accepts(self, filt: Any, chains: set[str]) -> bool:
        """Remove the groups' accept rules from NETKIT-FORWARD; True if there were any."""
        changed = False
        if filt.is_chain(FORWARD):
            for rule in self.rules(filt, FORWARD):
                if _accept_owner(self.comment(rule)) in chains:
                    self.ipt.Chain(filt, FORWARD).delete_rule(rule)
                    changed = True
        return changed

    def restore(self, table: Any, snap: _Snapshot) -> None:
        """Put netkit's chains of an already committed table back as in ``snap``, and commit."""
        table.refresh()
        parents = [c for c in snap if c in _INFRA]
        for parent in parents:  # emptied first: then nothing refers to the group chains
            if table.is_chain(parent):
                table.flush_entries(parent)
            elif snap[parent] is not None:
                table.create_chain(parent)
        for chain, rules in snap.items():
            if chain in _INFRA:
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

    def commit(self, touched: list[tuple[Any, _Snapshot]]) -> None:
        """Commit each touched table in order; if one fails, restore those committed before it."""
        done: list[tuple[Any, _Snapshot]] = []
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
def _session() -> Iterator[_Session]:
    ipt = _load()
    with _lock:
        session = _Session(ipt)
        try:
            yield session
        except (ipt.IPTCError, ipt.XTablesError, ValueError) as exc:
            raise errors.CNIError(errors.KERNEL, "iptables refused the change", str(exc)) from None
        finally:
            session.close()


class IptablesBackend:
    """Rules in the legacy xtables tables, through python-iptables (libiptc)."""

    name = "iptables"

    def apply(self, group: RuleGroup) -> None:
        """Install (or replace) the group: built in memory, committed per table, undone on failure."""
        group = _ipv4(group)
        expected = _expected(group)
        chains = set(expected)
        accepts = _accepts(group)
        with _session() as s:
            touched = []
            # filter first: were the nat commit to fail as well as the rollback, a stray accept
            # would be harmless.
            if s.exists("filter"):  # absent, its FORWARD policy is ACCEPT and it holds no accepts
                filt = s.table("filter")
                snap = s.snapshot(filt, [FORWARD])
                changed = s.drop_accepts(filt, chains)
                if accepts and s.forward_drops(filt) is not None:
                    s.ensure_chain(filt, FORWARD)
                    # Right after the isolation jump: accepting the container's traffic must not
                    # let it past isolation.
                    isolation = s.jump_index(filt, "FORWARD", ISOLATION)
                    s.ensure_jump(filt, "FORWARD", _Spec("netkit", FORWARD), 0 if isolation is None else isolation + 1)
                    s.append(filt, FORWARD, accepts)
                    changed = True
                if changed:
                    touched.append((filt, snap))

            if group.kind == DNAT and group.mappings and not s.localnet_guard_in_place():
                raw = s.table("raw")
                raw_snap = s.snapshot(raw, [LOCALNET])
                s.ensure_chain(raw, LOCALNET)
                raw.flush_entries(LOCALNET)
                s.append(raw, LOCALNET, [_LOCALNET_GUARD])
                s.ensure_jump(raw, "PREROUTING", _Spec("netkit", LOCALNET), 0)
                touched.append((raw, raw_snap))

            nat = s.table("nat")
            s.drop_group(nat, chains)
            for infra in (HOSTPORTS, MASQUERADE):
                s.ensure_chain(nat, infra)
            for base, local, infra in _BASE_JUMPS:
                s.ensure_jump(nat, base, _Spec("netkit", infra, local=local))
            for chain, specs in expected.items():
                nat.create_chain(chain)
                s.append(nat, chain, specs)
            for parent, spec in _jumps(group):
                s.append(nat, parent, [spec])
            touched.append((nat, _LAST))
            s.commit(touched)

    def apply_network(self, net: NetworkRules) -> None:
        """Install (or replace) the network's isolation and icc rules in filter FORWARD.

        Docker's two stages: NETKIT-ISOLATION sends traffic entering from a netkit bridge (not a
        reply, not DNAT'd) to the network's chain, which sends what leaves by another interface to
        NETKIT-ISOLATION-2, which drops it if that interface is another netkit bridge.
        """
        if not net.icc and not sysctl.br_netfilter_active():
            raise errors.CNIError(errors.INVALID_CONFIG, "icc=false with the iptables backend needs br_netfilter",
                                  "load br_netfilter (net.bridge.bridge-nf-call-iptables=1) or use nftables")
        with _session() as s:
            filt = s.table("filter")
            snap = s.snapshot(filt, [ISOLATION, ISOLATION2, net.chain])
            for chain in (ISOLATION, ISOLATION2):
                s.ensure_chain(filt, chain)
            others = [r for r in s.rules(filt, ISOLATION)
                      if s.target(r).startswith("NK-N-") and s.target(r) != net.chain]
            filt.flush_entries(ISOLATION)
            s.append(filt, ISOLATION, [_Spec("netkit/replies", "RETURN", ctstate="RELATED,ESTABLISHED"),
                                       _Spec("netkit/published", "RETURN", ctstate="DNAT")])
            for rule in others:
                s.ipt.Chain(filt, ISOLATION).append_rule(rule)
            if f"bridge/{net.bridge}" not in {s.comment(r) for r in s.rules(filt, ISOLATION2)}:
                s.append(filt, ISOLATION2, [_Spec(f"bridge/{net.bridge}", "DROP", oif=net.bridge)])
            specs = []
            if net.isolate:
                specs.append(_Spec(f"isolate/{net.bridge}", ISOLATION2, oif="!" + net.bridge))
            if not net.icc:
                specs.append(_Spec(f"no-icc/{net.bridge}", "DROP", oif=net.bridge))
            if filt.is_chain(net.chain):
                filt.flush_entries(net.chain)
                filt.delete_chain(net.chain)
            if specs:
                filt.create_chain(net.chain)
                s.append(filt, net.chain, specs)
                s.append(filt, ISOLATION, [_Spec(net.chain, net.chain, iif=net.bridge)])
            s.ensure_jump(filt, "FORWARD", _Spec("netkit-isolation", ISOLATION), 0)
            s.commit([(filt, snap)])

    def remove_chains(self, chains: set[str]) -> None:
        """Remove these group chains, the jumps to them and their accept rules; absent ones are fine."""
        with _session() as s:
            touched = []
            if s.exists("filter"):
                filt = s.table("filter")
                snap = s.snapshot(filt, [FORWARD])
                if s.drop_accepts(filt, chains):
                    touched.append((filt, snap))
            if s.exists("nat"):
                nat = s.table("nat")
                if s.drop_group(nat, chains):
                    touched.append((nat, _LAST))
            s.commit(touched)

    def chains(self) -> set[str]:
        """Names of every group present: its nat chains, or only its accept rules in filter.

        Accept rules alone are what a process killed between the filter and the nat commit
        leaves; GC must see their group to remove them.
        """
        with _session() as s:
            out = set(s.group_chains(s.table("nat"))) if s.exists("nat") else set()
            if s.exists("filter"):
                filt = s.table("filter")
                if filt.is_chain(FORWARD):
                    out |= {owner for owner in (_accept_owner(s.comment(r)) for r in s.rules(filt, FORWARD))
                            if owner.startswith("NK-")}
            return out

    def rule_comments(self) -> dict[str, list[str]]:
        """Group chain -> the comments of its rules, in order."""
        with _session() as s:
            if not s.exists("nat"):
                return {}
            nat = s.table("nat")
            return {chain: [s.comment(r) for r in s.rules(nat, chain)] for chain in s.group_chains(nat)}

    def group_comments(self, chain: str) -> list[str] | None:
        """Comments of one group chain's rules, or None if the chain is absent."""
        with _session() as s:
            if not s.exists("nat"):
                return None
            nat = s.table("nat")
            return [s.comment(r) for r in s.rules(nat, chain)] if nat.is_chain(chain) else None

    def expected_comments(self, group: RuleGroup) -> dict[str, list[str]]:
        """What rule_comments() shows for the group once applied: the nftables backend's comments
        (without those of IPv6 rules, which this backend skips)."""
        return {chain: [spec.comment for spec in specs] for chain, specs in _expected(_ipv4(group)).items()}

    def forward_blockers(self) -> list[str]:
        """nft base forward chains whose policy drops: an accept in the legacy tables does not
        override them.  The legacy FORWARD is not reported: apply() lets the attachment's traffic
        through it (see the module docstring)."""
        from netkit.firewall.nftables import NftablesBackend  # its reading, kept per ruleset generation

        return NftablesBackend().nft_forward_blockers()


def legacy_forward_blockers() -> list[str]:
    """The legacy filter FORWARD chain of this thread's namespace when it drops by default
    (described), for the nftables backend, whose accepts cannot override it.

    Without a legacy filter table (the usual nft host) nothing is read: reading one that is absent
    would create it.
    """
    if not xtables.exists("filter"):
        return []
    with _session() as s:
        why = s.forward_drops(s.table("filter"))
    return [] if why is None else [f"legacy iptables filter FORWARD ({why})"]
