"""Container lifecycle: run, stop, rm, exec, and what ps / inspect / logs / port show."""

from __future__ import annotations

import os
import select
import signal
import time
from typing import Any, NamedTuple

from netkit import errors, fileio, procinfo
from netkit.cni import chain
from netkit.net import netns
from netkit.rollback import Rollback
from netkit.runtime import dnsconf, endpoints, etcfiles, networks, ports, process, sandbox, state
from netkit.runtime import inspect as views
from netkit.runtime.root import Root
from netkit.runtime.state import Container, ContainerError, Endpoint

STOP_TIMEOUT = 10
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class RunOptions(NamedTuple):
    """What `netkit run` was asked for."""

    command: list[str]
    network: str = networks.DEFAULT  # the one network of callers that know of no other (the lab)
    networks: list[str] = []  # noqa: RUF012 - every --network in order (eth0, eth1, ...); wins over `network`
    aliases: list[str] = []  # noqa: RUF012 - --network-alias: names on the first network
    publish: list[str] = []  # noqa: RUF012 - never mutated
    name: str = ""
    detach: bool = False
    auto_remove: bool = False
    ip: str = ""
    hostname: str = ""
    env: list[str] = []  # noqa: RUF012
    dns: list[str] = []  # noqa: RUF012
    labels: dict[str, str] = {}  # noqa: RUF012
    init: bool = False
    add_hosts: list[str] = []  # noqa: RUF012
    dns_search: list[str] = []  # noqa: RUF012
    dns_options: list[str] = []  # noqa: RUF012
    mac_address: str = ""


def _mode(network: str) -> tuple[str, str]:
    """(kind, argument): ("bridge", name) | ("host", "") | ("none", "") | ("container", ref)."""
    if network in ("host", "none"):
        return network, ""
    if network.startswith("container:"):
        return "container", network.split(":", 1)[1]
    return "bridge", network


def valid_name(name: str) -> None:
    """Refuse a container name Docker would refuse (one line)."""
    if not name or not name[0].isalnum() or not all(c.isalnum() or c in "_.-" for c in name):
        raise ContainerError(f"invalid container name {name!r}", "letters, digits, '_', '.', '-'")


def _networks(opts: RunOptions) -> list[str]:
    """The networks asked for, in order (one ``--network`` or the caller's ``network``)."""
    return list(opts.networks) or [opts.network]


def _published(records: list[Container]) -> set[tuple[str, int]]:
    """The (protocol, host port) pairs held by the containers that have not exited."""
    return {(m["protocol"], m["hostPort"]) for c in records if c.state != "exited" for m in c.ports}


def _validate(opts: RunOptions) -> tuple[str, str, list[Endpoint], list[dict[str, Any]]]:
    """Refuse what no state of the root can make valid; (kind, argument, endpoints, port mappings asked for)."""
    if not opts.command:
        raise ContainerError("no command given", "usage: netkit run [OPTIONS] -- CMD [ARGS...]")
    eps = endpoints.plan(_networks(opts), opts.ip, list(opts.aliases))
    kind, arg = _mode(eps[0].network)
    mappings = [m for spec in opts.publish for m in ports.parse(spec)]
    if mappings and kind in ("host", "none", "container"):
        raise ContainerError(f"published ports are discarded when using {kind} network mode"
                             if kind != "container" else "conflicting options: port publishing and the container type network mode")
    _validate_flags(opts, kind)
    return kind, arg, eps, mappings


def _validate_flags(opts: RunOptions, kind: str) -> None:
    """--add-host, --dns-search, --dns-option and --mac-address: well formed and usable in this mode."""
    # Docker's rule: a joiner has its owner's network, names and resolver.
    if kind == "container" and (opts.add_hosts or opts.dns_search or opts.dns_options or opts.dns or opts.mac_address):
        raise ContainerError("conflicting options: --add-host, --dns, --dns-search, --dns-option or --mac-address "
                             "and the container type network mode")
    extra = [etcfiles.parse_add_host(spec) for spec in opts.add_hosts]
    if kind != "bridge" and any(e.address == etcfiles.HOST_GATEWAY for e in extra):
        raise ContainerError(f"--add-host NAME:{etcfiles.HOST_GATEWAY} needs a bridge network, not {kind} mode")
    for value in opts.dns:
        etcfiles.check_nameserver(value)
    for value in opts.dns_search:
        etcfiles.check_word("--dns-search", value)
    for value in opts.dns_options:
        etcfiles.check_word("--dns-option", value)
    if opts.mac_address:
        if kind != "bridge":
            raise ContainerError(f"conflicting options: --mac-address and the {kind} network mode")
        mac_address(opts.mac_address)


def mac_address(text: str) -> str:
    """``text`` as a unicast MAC address, lower case (the bridge plugin takes that form only)."""
    parts = text.lower().replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p) for p in parts):
        raise ContainerError(f"invalid MAC address {text!r}", "expected six hex pairs: 02:42:ac:11:00:02")
    if int(parts[0], 16) & 1:
        raise ContainerError(f"invalid MAC address {text!r}: a multicast address")
    return ":".join(parts)


def _name(opts: RunOptions, cid: str, records: list[Container]) -> str:
    """The container's name: the one asked for (valid and free) or ``netkit_<id prefix>``."""
    name = opts.name or f"netkit_{cid[:8]}"
    valid_name(name)
    if any(c.name == name for c in records):
        raise ContainerError(f'the container name "{name}" is already in use')
    return name


def _environment(opts: RunOptions, cid: str) -> dict[str, str]:
    """CMD's environment: PATH, HOSTNAME and HOME, then each -e KEY=VALUE (or KEY, from ours)."""
    env = {"PATH": os.environ.get("PATH", DEFAULT_PATH), "HOSTNAME": opts.hostname or cid[:12], "HOME": "/root"}
    for item in opts.env:
        key, sep, value = item.partition("=")
        if not key:
            raise ContainerError(f"invalid environment variable {item!r}")
        env[key] = value if sep else os.environ.get(key, "")
    return env


def _owner(root: Root, ref: str) -> Container:
    """The running container whose network namespace a ``container:REF`` one joins."""
    owner = state.find(root, ref)
    if not state.alive(owner):
        raise ContainerError(f"cannot join the network of container {ref}: it is not running")
    return owner


def _record(root: Root, opts: RunOptions, cid: str, name: str, env: dict[str, str], kind: str,
            eps: list[Endpoint], owner: Container | None, mappings: list[dict[str, Any]]) -> Container:
    """The new container's record, state created, not yet saved."""
    if owner is not None:
        # The owner's namespace as this process reaches it: its bind mount may be visible only
        # in the mount namespace of the command that ran it (ip netns exec); its PID's always is.
        path = sandbox.reachable(owner)
    elif kind == "host":
        path = ""
    else:
        path = os.path.join(root.netns, cid)
    return Container(
        id=cid, name=name, command=list(opts.command), env=env, cwd=os.getcwd(),
        hostname=opts.hostname or cid[:12], network=eps[0].network, net_kind=kind,
        owner=owner.id if owner else "", ports=mappings, dns=list(opts.dns), labels=dict(opts.labels),
        init=opts.init, extra_hosts=list(opts.add_hosts), dns_search=list(opts.dns_search),
        dns_options=list(opts.dns_options), mac_address=mac_address(opts.mac_address) if opts.mac_address else "",
        created=time.time(), auto_remove=opts.auto_remove, log=os.path.join(root.container_dir(cid), "log"),
        netns=path, endpoints=eps,
    )


def _create(root: Root, opts: RunOptions) -> Container:
    """Validate, reserve the name and attach the network; returns the record (state created)."""
    kind, arg, eps, mappings = _validate(opts)
    cid = state.new_id()
    env = _environment(opts, cid)
    with root.locked():
        records = state.all_records(root)
        name = _name(opts, cid, records)
        owner = _owner(root, arg) if kind == "container" else None
        if kind == "bridge":
            for ep in eps:
                conf = networks.load(root, ep.network)  # an unknown network fails here, before anything is made
                if mappings and ep is eps[0] and networks.internal(conf):
                    # Docker's rule: nothing enters an internal network from outside, so nothing is published.
                    raise ContainerError(f"cannot publish ports on internal network {ep.network}",
                                         "drop -p, or use a network created without --internal")
                if mappings and ep is eps[0]:
                    ports.check_families(mappings, [r["subnet"] for r in networks.ranges(conf)], ep.network)
        mappings = ports.choose_free(mappings, _published(records))
        ctr = _record(root, opts, cid, name, env, kind, eps, owner, mappings)
        with Rollback() as undo:
            state.save(root, ctr)  # the name is taken from here on
            undo.push(state.remove, root, cid)
            _attach(root, ctr, undo)
        state.save(root, ctr)
    return ctr


def _attach(root: Root, ctr: Container, undo: Rollback) -> None:
    """Make the container's namespace (bridge and none modes) and ADD it to each of its networks."""
    if ctr.net_kind in sandbox.OWN_NAMESPACE:
        netns.create(ctr.netns)
        undo.push(netns.remove, ctr.netns)
    for ep in ctr.endpoints:
        endpoints.attach(root, ctr, ep, undo)


def release_network(root: Root, ctr: Container) -> None:
    """Detach the container's networks (DEL through the plugins, last endpoint first) and drop its namespace.

    Works when the process or the namespace is already gone; a container joined to another's
    network never tears that network down.  CNI_NETNS is the namespace as reachable from here, or
    empty when it is not (spec: DEL then still releases what it can find by name: lease, veth, rules).
    """
    path = None if ctr.net_kind == "host" else sandbox.reachable(ctr)
    failed: errors.CNIError | None = None
    for ep in reversed(ctr.endpoints):
        try:
            endpoints.release(root, ctr, ep, path)
        except errors.CNIError as exc:  # the other endpoints are still released; the first failure is told
            failed = failed or exc
    if failed is not None:
        raise failed
    if ctr.net_kind in sandbox.OWN_NAMESPACE:
        netns.remove(ctr.netns)


def _etc_files(ctr: Container) -> list[tuple[str, str]]:
    """(file name, text) of the /etc files the container gets, beside /etc/hostname.

    A namespace of its own gets its own hosts file and resolv.conf (Docker's rule: the host's
    resolver settings without its loopback nameservers, which are not the host's in there, each
    replaced by --dns, --dns-search or --dns-option when given); host mode keeps the host's files
    unless extra hosts or resolver settings are asked for, which then go on top of the host's own.
    """
    own = ctr.net_kind != "host"
    out = []
    if own or ctr.extra_hosts:
        out.append((dnsconf.HOSTS, dnsconf.hosts(ctr)))
    if own or ctr.dns or ctr.dns_search or ctr.dns_options:
        out.append((dnsconf.FILE, dnsconf.resolv_conf(ctr)))
    return out


def _owner_files(root: Root, ctr: Container) -> list[tuple[str, str]]:
    """A joiner's /etc/hosts and /etc/resolv.conf: its owner's very files (Docker's rule), so it resolves
    what the owner resolves, and the owner's connect/disconnect (rewritten in place) reach it too.  A
    file the owner has not (host mode: the host's own) is not bound: the joiner sees the host's too."""
    owner = ctr.owner
    try:
        # The owner may itself have joined another: the files are the namespace's first owner's.
        while (record := state.load(root, owner)).net_kind == "container" and record.owner:
            owner = record.owner
    except ContainerError:
        return []  # the owner was removed meanwhile: the joiner runs in no namespace of its own anyway
    d = root.container_dir(owner)
    return [(os.path.join(d, f), "/etc/" + f) for f in (dnsconf.HOSTS, dnsconf.FILE) if os.path.isfile(os.path.join(d, f))]


def _spec(root: Root, ctr: Container) -> process.Spec:
    d = root.container_dir(ctr.id)
    binds = []
    joiner = ctr.net_kind == "container"
    for fname, body in [("hostname", ctr.hostname + "\n"), *([] if joiner else _etc_files(ctr))]:
        # Not fsynced: written afresh at every start, and no container runs on after a reboot.
        fileio.write_atomic(os.path.join(d, fname), body.encode(), durable=False)
        binds.append((os.path.join(d, fname), "/etc/" + fname))
    if joiner:
        binds += _owner_files(root, ctr)
    return process.Spec(ctr.command, ctr.env, ctr.netns, ctr.net_kind in sandbox.OWN_NAMESPACE,
                        ctr.hostname, binds, ctr.cwd, ctr.init)


def _update(root: Root, cid: str, **fields: Any) -> bool:
    """Set ``fields`` of the record as it is now, under the lock (never save a copy read earlier: a
    connect or disconnect meanwhile would be undone); False when the record is gone (rm -f)."""
    with root.locked():
        try:
            current = state.load(root, cid)
        except ContainerError:
            return False
        for key, value in fields.items():
            setattr(current, key, value)
        state.save(root, current)
    return True


def _signal(pid: int, signum: int) -> None:
    """Pass a signal to the container's runner; it may be gone already (a runner that ended by itself
    meanwhile), which is no error of the supervisor's: there is nothing left to stop."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _supervise(root: Root, ctr: Container, notify: int | None) -> int:
    """Start the process, record it, wait for it, record the exit; clean up with --rm."""
    # Forwarding is in place before the process starts: a signal that came between its start (its
    # first output may already be out) and a handler set after it would end this supervisor, and
    # leave the container running, unsupervised.  Until the PID is known, signals wait in `early`.
    target, early = [0], []

    def forward(signum: int, _frame: object) -> None:
        if target[0]:
            _signal(target[0], signum)
        else:
            early.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        runner, pid = process.spawn(_spec(root, ctr))
    except BaseException as exc:
        _update(root, ctr.id, state="exited", exit_code=127, error=str(exc), finished_at=time.time())
        if notify is not None:
            os.write(notify, b"E" + str(exc).replace("\n", " ").encode(errors="replace") + b"\n")
        if ctr.auto_remove:
            remove(root, ctr.id, force=True)
        raise
    target[0] = pid
    for signum in early:
        _signal(pid, signum)
    if not _update(root, ctr.id, state="running", pid=pid, pid_start=procinfo.start_time(pid), started_at=time.time()):
        _signal(pid, signal.SIGKILL)  # removed while starting (rm -f): nothing may run on without a record
    if notify is not None:
        os.write(notify, b"ok\n")
        os.close(notify)
    _, status = os.waitpid(runner, 0)
    target[0] = 0  # reaped: its PID may be another process's from now on
    code = process.exit_code(status)
    if not _update(root, ctr.id, state="exited", exit_code=code, finished_at=time.time()):
        return code  # removed meanwhile (rm -f)
    if ctr.auto_remove:
        remove(root, ctr.id, force=True)
    return code


def run(root: Root, opts: RunOptions) -> tuple[Container, int]:
    """Create and start a container; (record, exit code) — exit code 0 at once when detached."""
    root.prepare()
    networks.ensure_default(root)
    ctr = _create(root, opts)  # its directory exists: state.save made it
    if not opts.detach:
        return ctr, _supervise(root, ctr, None)
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # the supervisor: its own session, output to the log
        os.close(r)
        try:
            os.setsid()
            log = os.open(ctr.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            _supervise(root, ctr, w)
        finally:
            os._exit(0)
    os.close(w)
    # One line, not EOF: the runner process inherits the pipe and lives as long as the container.
    answer = b""
    while not answer.endswith(b"\n") and (chunk := os.read(r, 4096)):
        answer += chunk
    os.close(r)
    answer = answer.strip()
    if answer != b"ok":
        raise ContainerError("failed to start the container", answer[1:].decode(errors="replace"))
    return state.load(root, ctr.id), 0


def _wait_dead(ctr: Container, timeout: float) -> bool:
    """True once the container's process is gone, False if it still runs after ``timeout`` seconds.

    Woken by the process's exit (a pidfd), not by a poll every 50 ms: that poll was ~25 ms of every
    ``rm -f`` and ``stop`` (profiled through the runtime server).
    """
    try:
        fd = os.pidfd_open(ctr.pid)
    except ProcessLookupError:
        return True
    except OSError:  # no pidfd here (Linux < 5.3): poll
        deadline = time.monotonic() + timeout
        while state.alive(ctr):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True
    try:
        # Checked after opening: if the pid was reused before, the descriptor is another process's.
        return not state.alive(ctr) or bool(select.select([fd], [], [], timeout)[0]) or not state.alive(ctr)
    finally:
        os.close(fd)


def stop(root: Root, ref: str, timeout: float = STOP_TIMEOUT) -> Container:
    """SIGTERM, then SIGKILL after ``timeout`` seconds (Docker's stop)."""
    ctr = state.find(root, ref)
    if state.alive(ctr):
        os.kill(ctr.pid, signal.SIGTERM)
        if not _wait_dead(ctr, timeout):
            os.kill(ctr.pid, signal.SIGKILL)
            _wait_dead(ctr, 5)
    return ctr


def _joiners(root: Root, ctr: Container) -> list[Container]:
    return [c for c in state.all_records(root) if c.owner == ctr.id and c.id != ctr.id]


def remove(root: Root, ref: str, force: bool = False) -> Container:
    """Delete a container: refuse a running one (or an owner with joiners) unless ``force``."""
    ctr = state.find(root, ref)
    if state.alive(ctr) and not force:
        raise ContainerError(f"cannot remove container {ctr.name}: it is running",
                             "stop it first or use rm -f")
    joiners = [c.name for c in _joiners(root, ctr) if state.alive(c)]
    if joiners and not force:
        raise ContainerError(f"cannot remove container {ctr.name}: containers share its network namespace",
                             ", ".join(joiners))
    if state.alive(ctr):
        os.kill(ctr.pid, signal.SIGKILL)
        _wait_dead(ctr, 5)
    with root.locked():
        try:
            # Read again under the lock: a connect since the first read added an endpoint whose lease
            # and DNS record the stale copy would leave behind.
            ctr = state.load(root, ctr.id)
        except ContainerError:
            return ctr  # removed meanwhile (another rm, the supervisor's --rm)
        release_network(root, ctr)
        state.remove(root, ctr.id)
    return ctr


def exec_in(root: Root, ref: str, argv: list[str], env: list[str]) -> int:
    """Run ``argv`` in a running container's namespaces; its exit code."""
    ctr = state.find(root, ref)
    if not state.alive(ctr):
        raise ContainerError(f"container {ctr.name} is not running")
    if not argv:
        raise ContainerError("no command given", "usage: netkit exec NAME -- CMD [ARGS...]")
    full_env = dict(ctr.env)
    for item in env:
        key, _, value = item.partition("=")
        full_env[key] = value
    return process.enter(ctr.pid, argv, full_env, ctr.cwd)


def inspect(root: Root, ref: str) -> dict[str, Any]:
    """What `inspect` shows (Docker's names: netkit/runtime/inspect.py)."""
    return views.container(state.find(root, ref))


def logs(root: Root, ref: str) -> bytes:
    """The output of a detached container."""
    ctr = state.find(root, ref)
    try:
        with open(ctr.log, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def users(root: Root, network: str, bridge_only: bool = False) -> list[str]:
    """The names of the containers with an endpoint on ``network`` (only bridge attachments if asked)."""
    return [c.name for c in state.all_records(root)
            if c.endpoint(network) is not None and (c.net_kind == "bridge" or not bridge_only)]


def prune(root: Root) -> list[str]:
    """Remove exited containers and leftover namespaces; ask the plugins to GC the rest."""
    removed = []
    for ctr in state.all_records(root):
        if not state.alive(ctr):
            remove(root, ctr.id, force=True)
            removed.append(ctr.name)
    # Under the lock: a container created meanwhile (its namespace made, its record not yet read here)
    # would otherwise lose its namespace and its leases to the collection.
    with root.locked():
        live = state.all_records(root)
        keep = {c.netns for c in live}
        for fname in os.listdir(root.netns) if os.path.isdir(root.netns) else []:
            path = os.path.join(root.netns, fname)
            if path not in keep:
                netns.remove(path)
        for net in networks.listing(root):
            if net.driver != "bridge":
                continue
            conf = networks.load(root, net.name)
            if networks.shared_with_others(root, conf):
                continue  # GC's valid list would be this runtime's only: it would take the others' leases
            valid = endpoints.valid_attachments(live, net.name)
            try:
                chain.gc(conf, valid, root.cni_path)
            except errors.CNIError:
                pass  # a plugin without GC: nothing more to collect there
    return removed


def remove_network(root: Root, name: str) -> None:
    """`network rm`: refused while a container has an endpoint on it; the check and the removal under
    the lock, so no connect or run slips in between."""
    with root.locked():
        networks.remove(root, name, users(root, name, bridge_only=True))
