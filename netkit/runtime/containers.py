"""Container lifecycle: run, stop, rm, exec, and what ps / inspect / logs / port show."""

from __future__ import annotations

import os
import signal
import time
from typing import Any, NamedTuple

from netkit import errors, fileio
from netkit.cni import chain
from netkit.net import netns
from netkit.runtime import networks, ports, process, sandbox, state
from netkit.runtime.root import Root
from netkit.runtime.state import ContainerError, Record

STOP_TIMEOUT = 10
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class RunOptions(NamedTuple):
    """What `netkit run` was asked for."""

    command: list[str]
    network: str = networks.DEFAULT
    publish: list[str] = []  # noqa: RUF012 - never mutated
    name: str = ""
    detach: bool = False
    auto_remove: bool = False
    ip: str = ""
    hostname: str = ""
    env: list[str] = []  # noqa: RUF012
    dns: list[str] = []  # noqa: RUF012
    labels: dict[str, str] = {}  # noqa: RUF012


def _mode(network: str) -> tuple[str, str]:
    """(kind, argument): ("bridge", name) | ("host", "") | ("none", "") | ("container", ref)."""
    if network in ("host", "none"):
        return network, ""
    if network.startswith("container:"):
        return "container", network.split(":", 1)[1]
    return "bridge", network


def _valid_name(name: str) -> None:
    if not name[0].isalnum() or not all(c.isalnum() or c in "_.-" for c in name):
        raise ContainerError(f"invalid container name {name!r}", "letters, digits, '_', '.', '-'")


def _attachment(rec: Record, path: str | None = None) -> chain.Attachment:
    """The CNI attachment of ``rec``; ``path`` is its CNI_NETNS when not the recorded one."""
    args = {"IgnoreUnknown": "1", "K8S_POD_NAME": rec["name"]}
    if rec.get("ip"):
        args["IP"] = rec["ip"]
    caps: dict[str, Any] = {"portMappings": rec.get("ports", [])}
    if path is None:
        path = rec["netns"] or "/proc/self/ns/net"
    return chain.Attachment(rec["id"], path, "eth0", args, caps)


def _conflist(root: Root, rec: Record) -> dict[str, Any]:
    kind = rec["net_kind"]
    if kind == "container":
        return networks.mode_conflist("container", rec["netns"])
    return networks.load(root, rec["network"] if kind == "bridge" else kind)


def _published_in_root(root: Root) -> set[tuple[str, int]]:
    return {(m["protocol"], m["hostPort"]) for r in state.all_records(root) if r.get("state") != "exited"
            for m in r.get("ports", [])}


def _create(root: Root, opts: RunOptions) -> Record:
    """Validate, reserve the name and attach the network; returns the record (state created)."""
    if not opts.command:
        raise ContainerError("no command given", "usage: netkit run [OPTIONS] -- CMD [ARGS...]")
    kind, arg = _mode(opts.network)
    mappings = [m for spec in opts.publish for m in ports.parse(spec)]
    if mappings and kind in ("host", "none", "container"):
        raise ContainerError(f"published ports are discarded when using {kind} network mode"
                             if kind != "container" else "conflicting options: port publishing and the container type network mode")
    if opts.ip and (kind != "bridge" or arg == networks.DEFAULT):
        raise ContainerError("user specified IP address is supported on user defined networks only")
    cid = state.new_id()
    owner: Record | None = None
    with root.locked():
        records = state.all_records(root)
        name = opts.name or f"netkit_{cid[:8]}"
        _valid_name(name)
        if any(r.get("name") == name for r in records):
            raise ContainerError(f'the container name "{name}" is already in use')
        if kind == "container":
            owner = state.find(root, arg)
            if not state.alive(owner):
                raise ContainerError(f"cannot join the network of container {arg}: it is not running")
        if kind == "bridge":
            networks.load(root, arg)  # an unknown network fails here, before anything is made
        mappings = ports.choose_free(mappings, _published_in_root(root))
        env = {"PATH": os.environ.get("PATH", DEFAULT_PATH), "HOSTNAME": opts.hostname or cid[:12], "HOME": "/root"}
        for item in opts.env:
            key, sep, value = item.partition("=")
            if not key:
                raise ContainerError(f"invalid environment variable {item!r}")
            env[key] = value if sep else os.environ.get(key, "")
        rec: Record = {
            "id": cid, "name": name, "command": list(opts.command), "env": env, "cwd": os.getcwd(),
            "hostname": opts.hostname or cid[:12], "network": arg if kind == "bridge" else opts.network,
            "net_kind": kind, "owner": owner["id"] if owner else "", "ports": mappings, "ip": opts.ip,
            "dns": list(opts.dns), "labels": dict(opts.labels), "state": "created", "created": time.time(), "pid": 0,
            "auto_remove": opts.auto_remove, "log": os.path.join(root.container_dir(cid), "log"),
        }
        if kind == "container":
            # The owner's namespace as this process reaches it: its bind mount may be visible only
            # in the mount namespace of the command that ran it (ip netns exec); its PID's always is.
            rec["netns"] = sandbox.reachable(owner)  # type: ignore[arg-type]
        elif kind == "host":
            rec["netns"] = ""
        else:
            rec["netns"] = os.path.join(root.netns, cid)
        state.save(root, rec)
        try:
            _attach(root, rec)
        except BaseException:
            state.remove(root, cid)
            raise
        state.save(root, rec)
    return rec


def _attach(root: Root, rec: Record) -> None:
    made_netns = rec["net_kind"] in ("bridge", "none")
    if made_netns:
        netns.create(rec["netns"])
    try:
        rec["cni_result"] = chain.add(_conflist(root, rec), _attachment(rec), root.cni_path, root.cni_cache)
    except BaseException:
        if made_netns:
            netns.remove(rec["netns"])
        raise
    rec["addresses"] = [ip["address"] for ip in rec["cni_result"].get("ips", [])
                        if not ip["address"].startswith(("127.", "::1"))]


def release_network(root: Root, rec: Record) -> None:
    """Detach the container's network (DEL through the plugins) and drop its namespace.

    Works when the process or the namespace is already gone; a container joined to another's
    network never tears that network down.  CNI_NETNS is the namespace as reachable from here, or
    empty when it is not (spec: DEL then still releases what it can find by name: lease, veth, rules).
    """
    path = None if rec["net_kind"] == "host" else sandbox.reachable(rec)
    chain.delete(_conflist(root, rec), _attachment(rec, path), root.cni_path, root.cni_cache)
    if rec["net_kind"] in ("bridge", "none"):
        netns.remove(rec["netns"])


def _spec(root: Root, rec: Record) -> process.Spec:
    d = root.container_dir(rec["id"])
    binds = []
    hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n" + "".join(
        f"{a.split('/')[0]}\t{rec['hostname']}\n" for a in rec.get("addresses", []))
    for fname, body, target in (("hostname", rec["hostname"] + "\n", "/etc/hostname"), ("hosts", hosts, "/etc/hosts"),
                                ("resolv.conf", "".join(f"nameserver {s}\n" for s in rec["dns"]), "/etc/resolv.conf")):
        if fname == "resolv.conf" and not rec["dns"] or rec["net_kind"] == "host" and fname != "hostname":
            continue
        fileio.write_atomic(os.path.join(d, fname), body.encode())
        binds.append((os.path.join(d, fname), target))
    return process.Spec(rec["command"], rec["env"], rec["netns"], rec["net_kind"] in ("bridge", "none"),
                        rec["hostname"], binds, rec["cwd"])


def _supervise(root: Root, rec: Record, notify: int | None) -> int:
    """Start the process, record it, wait for it, record the exit; clean up with --rm."""
    try:
        runner, pid = process.spawn(_spec(root, rec))
    except BaseException as exc:
        rec["state"], rec["exit_code"], rec["error"] = "exited", 127, str(exc)
        state.save(root, rec)
        if notify is not None:
            os.write(notify, b"E" + str(exc).replace("\n", " ").encode(errors="replace") + b"\n")
        if rec["auto_remove"]:
            remove(root, rec["id"], force=True)
        raise
    rec.update(state="running", pid=pid, pid_start=state.process_identity(pid), started_at=time.time())
    state.save(root, rec)
    if notify is not None:
        os.write(notify, b"ok\n")
        os.close(notify)

    def forward(signum: int, _frame: object) -> None:
        os.kill(pid, signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    _, status = os.waitpid(runner, 0)
    code = process.exit_code(status)
    with root.locked():
        try:
            current = state.load(root, rec["id"])
        except ContainerError:
            return code  # removed meanwhile (rm -f)
        current.update(state="exited", exit_code=code, finished_at=time.time())
        state.save(root, current)
    if rec["auto_remove"]:
        remove(root, rec["id"], force=True)
    return code


def run(root: Root, opts: RunOptions) -> tuple[Record, int]:
    """Create and start a container; (record, exit code) — exit code 0 at once when detached."""
    root.prepare()
    networks.ensure_default(root)
    rec = _create(root, opts)
    fileio.ensure_dir(root.container_dir(rec["id"]))
    if not opts.detach:
        return rec, _supervise(root, rec, None)
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # the supervisor: its own session, output to the log
        os.close(r)
        try:
            os.setsid()
            log = os.open(rec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            _supervise(root, rec, w)
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
    return state.load(root, rec["id"]), 0


def _wait_dead(rec: Record, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while state.alive(rec):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def stop(root: Root, ref: str, timeout: float = STOP_TIMEOUT) -> Record:
    """SIGTERM, then SIGKILL after ``timeout`` seconds (Docker's stop)."""
    rec = state.find(root, ref)
    if state.alive(rec):
        os.kill(rec["pid"], signal.SIGTERM)
        if not _wait_dead(rec, timeout):
            os.kill(rec["pid"], signal.SIGKILL)
            _wait_dead(rec, 5)
    return rec


def _joiners(root: Root, rec: Record) -> list[Record]:
    return [r for r in state.all_records(root) if r.get("owner") == rec["id"] and r["id"] != rec["id"]]


def remove(root: Root, ref: str, force: bool = False) -> Record:
    """Delete a container: refuse a running one (or an owner with joiners) unless ``force``."""
    rec = state.find(root, ref)
    if state.alive(rec) and not force:
        raise ContainerError(f"cannot remove container {rec['name']}: it is running",
                             "stop it first or use rm -f")
    joiners = [r["name"] for r in _joiners(root, rec) if state.alive(r)]
    if joiners and not force:
        raise ContainerError(f"cannot remove container {rec['name']}: containers share its network namespace",
                             ", ".join(joiners))
    if state.alive(rec):
        os.kill(rec["pid"], signal.SIGKILL)
        _wait_dead(rec, 5)
    with root.locked():
        release_network(root, rec)
        state.remove(root, rec["id"])
    return rec


def exec_in(root: Root, ref: str, argv: list[str], env: list[str]) -> int:
    """Run ``argv`` in a running container's namespaces; its exit code."""
    rec = state.find(root, ref)
    if not state.alive(rec):
        raise ContainerError(f"container {rec['name']} is not running")
    if not argv:
        raise ContainerError("no command given", "usage: netkit exec NAME -- CMD [ARGS...]")
    full_env = dict(rec["env"])
    for item in env:
        key, _, value = item.partition("=")
        full_env[key] = value
    return process.enter(rec["pid"], argv, full_env, rec["cwd"])


def inspect(root: Root, ref: str) -> dict[str, Any]:
    """What `inspect` shows."""
    rec = state.find(root, ref)
    return {
        "Id": rec["id"], "Name": rec["name"], "Command": rec["command"],
        "State": {"Status": rec["state"], "Running": state.alive(rec), "Pid": rec["pid"] if state.alive(rec) else 0,
                  "ExitCode": rec.get("exit_code"), "Error": rec.get("error", "")},
        "NetworkMode": rec["network"],
        "NetworkSettings": {"Network": rec["network"], "SandboxKey": sandbox.reachable(rec) if rec["net_kind"] != "host" else "", "Addresses": rec.get("addresses", []),
                            "Ports": [ports.describe(m) for m in rec.get("ports", [])]},
        "Hostname": rec["hostname"], "Created": rec["created"], "LogPath": rec["log"],
        "Config": {"Labels": rec.get("labels", {})},
    }


def logs(root: Root, ref: str) -> bytes:
    """The output of a detached container."""
    rec = state.find(root, ref)
    try:
        with open(rec["log"], "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def prune(root: Root) -> list[str]:
    """Remove exited containers and leftover namespaces; ask the plugins to GC the rest."""
    removed = []
    for rec in state.all_records(root):
        if not state.alive(rec):
            remove(root, rec["id"], force=True)
            removed.append(rec["name"])
    live = state.all_records(root)
    keep = {r["netns"] for r in live}
    for fname in os.listdir(root.netns) if os.path.isdir(root.netns) else []:
        path = os.path.join(root.netns, fname)
        if path not in keep:
            netns.remove(path)
    for net in networks.listing(root):
        if net["driver"] != "bridge":
            continue
        conf = networks.load(root, net["name"])
        if networks.shared_with_others(root, conf):
            continue  # GC's valid list would be this runtime's only: it would take the others' leases
        valid = [{"containerID": r["id"], "ifname": "eth0"} for r in live if r.get("network") == net["name"]]
        try:
            chain.gc(conf, valid, root.cni_path)
        except errors.CNIError:
            pass  # a plugin without GC: nothing more to collect there
    return removed
