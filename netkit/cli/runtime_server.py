"""The runtime server: ``netkit run|ps|inspect|stop|rm|exec|port|logs`` with the imports already done.

``netkit agent`` starts it at start-up (``start``: ``python -m netkit.cli.runtime_server``, a process of
its own, so that neither it nor the commands it forks pass for an agent in a process listing) and it
ends with the agent.  Single-threaded, so forking it per command is safe.  It listens on
``runtime.sock`` beside the agent's socket (mode 0600, root peers with its own privileges only) once it holds
the claim on that path (an abstract socket named after it): an agent that loses its own start-up
race, or one being replaced, never takes the socket from the server that serves it.

For each request of the thin client (netkit/cli/thin.py) it forks a child that becomes the caller
as far as the command can tell -- its network and mount namespaces, working directory, umask,
environment, stdin/stdout/stderr, cgroups and resource limits -- in a session of its own, runs the
same click command, and sends the exit status back on the connection it holds (so a reply comes
even if the server is gone by then).  Signal numbers the client sends are relayed to that child,
as a signal sent to the ``netkit`` process's pid reaches it without a server; its own handlers (a
foreground ``run`` passes SIGINT/SIGTERM/SIGHUP to the container) take it from there.

The child's containers are started exactly as a command typed by hand starts them: a detached
container's supervisor is forked by the child, which then exits, so it is re-parented to init (or
the nearest subreaper) as it is when the ``netkit run`` process exits; ``ps`` and ``stop`` read the
same records and pids.  A child that is the caller's foreground ``run`` is the container's
supervisor, as the ``netkit run`` process is without a server.

Not served (the client runs the CLI itself): a caller of another PID namespace or another
installation, or one with failpoints armed (those are parsed once per process, at import).
"""

from __future__ import annotations

import atexit
import errno
import hashlib
import importlib
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import traceback
from typing import NamedTuple

from netkit import failpoints
from netkit.agent import protocol
from netkit.cli import thin
from netkit.net import netns

# What the verbs import, loaded once here rather than in every command (measured: the modules a
# served `netkit run` still imported, and -X importtime).
PRELOAD = ("netkit.cli.commands", "netkit.runtime.containers", "netkit.runtime.root", "netkit.launch.invoker",
           "netkit.launch.install", "netkit.agent.client", "netkit.plugins", "netkit.net.ifflags", "sysconfig",
           "json", "difflib")  # difflib: click's parser imports it at every short option (-d, -p, -f)
MAX_REQUEST = 16 << 20
REQUEST_TIMEOUT_S = 5.0  # a client that connects and sends nothing must not hold the server
STOP_WAIT_S = 5.0
CLAIM_RETRY_S = 0.05
_FDS = 6  # stdin, stdout, stderr, network namespace, mount namespace, working directory


class Request(NamedTuple):
    """One command line from the thin client."""

    umask: int
    prog: str  # how click names the program in usage lines, as in the caller's process
    argv: list[str]
    env: dict[str, str]


def start(agent_socket: str) -> subprocess.Popen[bytes]:
    """Start the runtime server beside the agent at ``agent_socket``; it stops when this process exits."""
    path = thin.socket_path({"NETKIT_AGENT_SOCKET": agent_socket})
    # The server watches the read end: EOF when this process is gone, however it ended (SIGKILL too).
    alive_r, alive_w = os.pipe2(os.O_CLOEXEC)
    flags = [flag for flag, on in (("-s", sys.flags.no_user_site), ("-P", sys.flags.safe_path)) if on]
    try:
        proc = subprocess.Popen([sys.executable, *flags, "-m", __name__, path, str(alive_r)], pass_fds=(alive_r,),
                                stdin=subprocess.DEVNULL)  # its output: the agent's (its log)
    finally:
        os.close(alive_r)
    atexit.register(_stop, proc, alive_w)
    return proc


def _stop(proc: subprocess.Popen[bytes], alive_w: int) -> None:
    """The agent is exiting: end the server and reap it (commands it started finish on their own)."""
    os.close(alive_w)
    proc.terminate()
    try:
        proc.wait(STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _claim(path: str, alive_fd: int, stopping: list[bool]) -> socket.socket | None:
    """The claim on ``path``, held for life (the kernel drops it with the process); None if stopped first.

    Waits while another server holds it: the one of the agent this one's replaces, until it ends.
    """
    name = b"\0netkit-runtime-server:" + hashlib.sha256(os.fsencode(os.path.abspath(path))).hexdigest().encode()
    claim = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    while not stopping:
        try:
            claim.bind(name)
            return claim
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
        # Wait a while before trying again (on the agent's pipe, which also tells if it is gone).
        if select.select([alive_fd] if alive_fd >= 0 else [], [], [], CLAIM_RETRY_S)[0]:
            break  # our agent is gone
    claim.close()
    return None


def _listen(path: str) -> tuple[socket.socket, int]:
    """The listening socket at ``path`` (root only), bound under a temporary name and renamed into place."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(tmp)
    os.chmod(tmp, 0o600)
    sock.listen(64)
    os.rename(tmp, path)
    return sock, os.stat(path).st_ino


class _Job(NamedTuple):
    pid: int
    pidfd: int
    conn: socket.socket


def serve(path: str, alive_fd: int = -1) -> None:
    """Serve on ``path`` until SIGTERM/SIGINT or EOF on ``alive_fd``; single-threaded (it forks)."""
    for module in PRELOAD:
        importlib.import_module(module)
    from netkit.launch import invoker

    invoker.warm_up()
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stopping.append(True))
    signal.set_wakeup_fd(wake_w)
    claim = _claim(path, alive_fd, stopping)
    if claim is None:
        return
    listener, inode = _listen(path)
    jobs: dict[int, _Job] = {}  # by pidfd
    conns: dict[int, _Job] = {}  # by connection fd, while the client is connected
    poller = select.poll()
    own = [listener.fileno(), wake_r, wake_w, claim.fileno()] + ([alive_fd] if alive_fd >= 0 else [])
    for fd in (listener.fileno(), wake_r, alive_fd):
        if fd >= 0:
            poller.register(fd, select.POLLIN)
    try:
        while not stopping:
            # One event per poll: handling one may close descriptors whose numbers a later event of
            # the same batch names (and an accept may reuse them at once).
            fd, _ = poller.poll()[0]
            if fd == listener.fileno():
                # Every connection still open here, also of jobs whose client went: none may leak
                # into the new command (and the container supervisors it leaves behind).
                job = _accept(listener, own + list(jobs) + [j.conn.fileno() for j in jobs.values()])
                if job is not None:
                    jobs[job.pidfd] = conns[job.conn.fileno()] = job
                    poller.register(job.pidfd, select.POLLIN)
                    poller.register(job.conn.fileno(), select.POLLIN)
            elif fd in jobs:
                job = jobs.pop(fd)
                poller.unregister(fd)
                _reaped(job, conns.pop(job.conn.fileno(), None) is not None, poller)
            elif fd in conns:
                _relay(conns, fd, poller)
            elif fd == alive_fd:
                stopping.append(True)  # the agent is gone
            elif fd == wake_r:
                try:  # a signal: its handler has run, `stopping` tells
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
    finally:
        signal.set_wakeup_fd(-1)
        try:
            if os.stat(path).st_ino == inode:  # a newer server may own the path by now
                os.unlink(path)
        except FileNotFoundError:
            pass
        listener.close()
        for job in jobs.values():
            os.close(job.pidfd)
            job.conn.close()  # the commands keep their own copy: their status still reaches the client


def _reaped(job: _Job, connected: bool, poller: select.poll) -> None:
    """A command ended: reap it; if a signal ended it (it could not report), report its status."""
    _, status = os.waitpid(job.pid, 0)
    os.close(job.pidfd)
    if connected:
        poller.unregister(job.conn.fileno())
        if os.WIFSIGNALED(status):
            try:
                job.conn.sendall(thin.EXITED + status.to_bytes(4, "big", signed=True))
            except OSError:
                pass
    job.conn.close()


def _relay(conns: dict[int, _Job], fd: int, poller: select.poll) -> None:
    """Signal numbers from the client to its command; EOF: the client went away (the command goes on)."""
    job = conns[fd]
    try:
        data = job.conn.recv(64)
    except OSError:
        data = b""
    if not data:
        poller.unregister(fd)
        del conns[fd]
        return
    for signum in data:
        if signum in thin.FORWARDED_SIGNALS:
            try:
                os.kill(job.pid, signum)
            except ProcessLookupError:
                pass


def _received_fds(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % 4
            fds += [int.from_bytes(data[i:i + 4], sys.byteorder) for i in range(0, usable, 4)]
    for fd in fds:
        os.set_inheritable(fd, False)  # until the child makes 0-2 of three of them
    return fds


def _same_pid_namespace(pid: int) -> bool:
    try:
        return pid > 0 and os.stat(f"/proc/{pid}/ns/pid").st_ino == os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return False


def parse(body: bytes) -> Request | None:
    """The request in ``body`` (thin.py's format), or None when it is not one this installation serves."""
    fields = body.split(b"\0")
    if len(fields) < 5 or fields[0] != thin.MAGIC or fields[1] != thin.identity():
        return None
    umask, prog, count = int(fields[2]), os.fsdecode(fields[3]), int(fields[4])
    argv = [os.fsdecode(f) for f in fields[5:5 + count]]
    env = dict(os.fsdecode(f).partition("=")[::2] for f in fields[5 + count:] if f)
    return Request(umask, prog, argv, env)


def _accept(listener: socket.socket, server_fds: list[int]) -> _Job | None:
    """Take one request and fork its command; None when it was refused ("not served") or broken."""
    conn, _ = listener.accept()
    fds: list[int] = []
    try:
        conn.settimeout(REQUEST_TIMEOUT_S)
        peer, uid = protocol.peer(conn)
        head, ancillary, _, _ = conn.recvmsg(4, socket.CMSG_SPACE(_FDS * 4))
        fds = _received_fds(ancillary)
        size = int.from_bytes(head, "big") if len(head) == 4 else MAX_REQUEST + 1
        request = parse(protocol.recv_exact(conn, size)) if size <= MAX_REQUEST else None
        if (request is None or uid != 0 or len(fds) != _FDS or not _same_pid_namespace(peer)
                or not protocol.same_privileges(peer) or failpoints.ENV in request.env):
            conn.sendall(thin.NOT_SERVED)
            conn.close()
            return None
        conn.settimeout(None)
        sys.stdout.flush()
        sys.stderr.flush()
        child = os.fork()
        if child == 0:
            _command(conn, fds, request, peer, server_fds)
        return _Job(child, os.pidfd_open(child), conn)
    except (OSError, ValueError):
        conn.close()
        return None
    finally:
        for fd in fds:
            os.close(fd)


def _cgroups(pid: str) -> dict[str, str]:
    """{controllers ("" for the unified hierarchy): path} of process ``pid``."""
    with open(f"/proc/{pid}/cgroup") as f:
        return {controllers: path for _, controllers, path in (line.rstrip("\n").split(":", 2) for line in f)}


def cgroup_mounts() -> dict[str, str]:
    """{controllers: mount point} of the cgroup hierarchies mounted at their root."""
    mounts: dict[str, str] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            before, _, after = line.partition(" - ")
            fields, (fstype, _, options) = before.split(), after.split()[:3]
            if fields[3] != "/":
                continue
            if fstype == "cgroup2":
                mounts.setdefault("", fields[4])
            elif fstype == "cgroup":  # v1: /proc/PID/cgroup names a hierarchy by its controllers
                controllers = [o for o in options.split(",") if o not in ("rw", "ro")]
                for key in (",".join(controllers), *controllers):
                    mounts.setdefault(key, fields[4])
    return mounts


def _join_cgroups(peer: int) -> None:
    """Move this process into the caller's cgroups.

    Without it the command and the containers it starts would live in the agent's cgroup, and a
    service manager stopping the agent's unit kills everything in it.  Best effort: a hierarchy
    this process cannot write stays the agent's (the caller's command would not fare better).
    """
    mine, theirs = _cgroups("self"), _cgroups(str(peer))
    moves = {c: p for c, p in theirs.items() if mine.get(c) != p}
    if not moves:
        return
    mounts = cgroup_mounts()
    for controllers, path in moves.items():
        base = mounts.get(controllers)
        if base is None:
            continue
        try:
            with open(os.path.join(base, path.lstrip("/"), "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        except OSError:
            pass


def _copy_limits(peer: int) -> None:
    """The caller's resource limits (open files, core size...), which the command and its containers inherit."""
    for name in dir(resource):
        if name.startswith("RLIMIT_"):
            kind = getattr(resource, name)
            try:
                limits = resource.prlimit(peer, kind)
                if limits != resource.getrlimit(kind):
                    resource.setrlimit(kind, limits)
            except (OSError, ValueError):
                pass


def _forget_in_forks(fd: int) -> None:
    """Close ``fd`` in every process forked from here on: a detached container's supervisor and the
    runner of every container would otherwise hold the client's connection as long as they live."""
    closed = []

    def close() -> None:
        if not closed:
            closed.append(True)
            os.close(fd)

    os.register_at_fork(after_in_child=close)


def _stdio() -> None:
    """sys.stdin/stdout/stderr over the caller's 0/1/2, as Python would have opened them there."""
    old = sys.stdin, sys.stdout, sys.stderr
    new = []
    for fd, (mode, stream, errors) in enumerate(zip("rww", old, ("strict", "strict", "backslashreplace"))):
        line = fd == 2 or os.isatty(fd)
        new.append(open(fd, mode, buffering=1 if line else -1, encoding=getattr(stream, "encoding", None) or "utf-8",
                        errors=getattr(stream, "errors", None) or errors, closefd=False))
    sys.stdin, sys.stdout, sys.stderr = new


def _command(conn: socket.socket, fds: list[int], request: Request, peer: int, server_fds: list[int]) -> None:
    """In the forked child: become the caller, run the command, report its status.  Never returns."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for fd in server_fds:
            os.close(fd)
        os.setsid()  # not the agent's session nor process group: a signal to those is not the caller's
        _join_cgroups(peer)
        _copy_limits(peer)
        stdin, stdout, stderr, net, mnt, cwd = fds
        netns.setns_fd(net, netns.CLONE_NEWNET)
        netns.setns_fd(mnt, netns.CLONE_NEWNS)
        os.fchdir(cwd)
        os.umask(request.umask)
        for target, fd in enumerate((stdin, stdout, stderr)):
            os.dup2(fd, target)
        for fd in fds:
            os.close(fd)
        os.environ.clear()
        os.environ.update(request.env)
        _forget_in_forks(conn.fileno())
        sys.argv = request.argv
        _stdio()
        from netkit.cli.commands import main

        try:
            main(args=request.argv[1:], prog_name=request.prog)
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc.code)
    except BaseException:  # noqa: BLE001 - the caller sees it on its stderr, as it would have
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        try:
            conn.sendall(thin.EXITED + (code << 8).to_bytes(4, "big", signed=True))
        except OSError:
            pass
        os._exit(code)


def _exit_code(code: object) -> int:
    """sys.exit's argument as Python turns it into an exit status."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":  # started by start(): python -m netkit.cli.runtime_server PATH ALIVE_FD
    serve(sys.argv[1], int(sys.argv[2]))
