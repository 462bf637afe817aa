"""The ``netkit`` command's first step: hand a container verb to the warm runtime server, else run the CLI.

The runtime server (netkit/cli/runtime_server.py) runs beside the agent with click, the CLI and the
runtime already imported.  For ``run ps inspect stop rm exec port logs`` this module sends it the
command line, the environment, the umask and, as descriptors, stdin/stdout/stderr, the network and
mount namespaces and the working directory; a forked copy of the server runs the very same click
command on them and its exit status comes back here.  Signals this process gets while it waits
(Ctrl-C, SIGTERM, SIGHUP...) are passed on, one byte each, and reach the command as if it ran here.

Whenever forwarding is not sure to behave as the command run here would, the full CLI runs here:
not root, ``NETKIT_AGENT=off``, no server listening, another installation's server (it answers
"not served"), a foreground ``run``/``exec`` on a terminal (the command would not be in the
terminal's foreground process group, so job control and reading the terminal would differ).

Standard library only, and the cheap part of it (``_socket``, ``_signal``: not ``socket.py`` nor
``signal.py``, whose enum imports cost milliseconds): this is what every ``netkit`` command loads.
"""

import os
import sys

VERBS = frozenset({"run", "ps", "inspect", "stop", "rm", "exec", "port", "logs"})
SOCKET_NAME = "runtime.sock"  # beside the agent's socket
DEFAULT_AGENT_SOCKET = "/run/netkit/agent.sock"  # netkit.agent.protocol.DEFAULT_SOCKET, not imported: cheap
MAGIC = b"netkit-runtime-1"
EXITED, NOT_SERVED = b"X", b"N"  # reply kinds: 1 byte, then for EXITED the wait status as 4 bytes
FORWARDED_SIGNALS = (1, 2, 3, 10, 12, 15)  # SIGHUP SIGINT SIGQUIT SIGUSR1 SIGUSR2 SIGTERM


def socket_path(environ: "os._Environ[str] | dict[str, str]") -> str:
    """The runtime server's socket: ``runtime.sock`` in the directory of the agent's socket."""
    agent = environ.get("NETKIT_AGENT_SOCKET") or DEFAULT_AGENT_SOCKET
    return os.path.join(os.path.dirname(agent), SOCKET_NAME)


def identity() -> bytes:
    """Which installation this is: a server of another environment or code tree does not serve it.

    The interpreter's directory, not its name (a venv's ``python`` and ``python3`` are one environment)
    nor sys.prefix (under ``-S`` it is not the venv's: site sets that).
    """
    from netkit import __version__  # the package's __init__: a constant, nothing imported

    # The version too: after an upgrade in place the old server still has the old code imported.
    return os.fsencode(f"{os.path.dirname(sys.executable)}\n{os.path.dirname(os.path.abspath(__file__))}"
                       f"\n{__version__}")


def verb_of(args: list[str]) -> tuple[str, list[str]]:
    """(verb, its arguments) after the global ``--root DIR``; ("", []) when anything else comes first."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--root":
            i += 2
        elif arg.startswith("--root="):
            i += 1
        elif arg.startswith("-"):
            return "", []
        else:
            return arg, args[i + 1:]
    return "", []


def _detached(rest: list[str]) -> bool:
    """True when ``run``'s options (before ``--``) ask for ``-d``."""
    for arg in rest:
        if arg == "--":
            return False
        if arg in ("-d", "--detach"):
            return True
    return False


def wanted(args: list[str], environ: "os._Environ[str] | dict[str, str]") -> bool:
    """True when this command line may go to the runtime server (see the module's docstring)."""
    verb, rest = verb_of(args)
    if verb not in VERBS or environ.get("NETKIT_AGENT") == "off" or os.geteuid() != 0:
        return False
    if verb in ("run", "exec") and not (verb == "run" and _detached(rest)) and os.isatty(0):
        return False
    return True


def _request(args: list[str]) -> bytes:
    umask = os.umask(0o022)
    os.umask(umask)
    env = [k + b"=" + v for k, v in os.environb.items()]
    # How click names the program in usage lines (click's own rule): the script's name, or `python -m netkit`.
    package = getattr(sys.modules.get("__main__"), "__package__", None)
    prog = b"python -m " + package.encode() if package else os.fsencode(os.path.basename(sys.argv[0]))
    fields = [MAGIC, identity(), b"%d" % umask, prog, b"%d" % (len(args) + 1), os.fsencode(sys.argv[0]),
              *map(os.fsencode, args), *env]
    body = b"\0".join(fields)
    return len(body).to_bytes(4, "big") + body


def _recv_exact(sock: "object", n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))  # type: ignore[attr-defined]
        if not chunk:
            return buf
        buf += chunk
    return buf


def forward(args: list[str], path: str) -> int | None:
    """Run ``netkit ARGS`` through the server at ``path``; its wait status, or None if not served."""
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    opened: list[int] = []
    try:
        try:
            sock.connect(path)
            for name, flags in (("/proc/self/ns/net", os.O_RDONLY), ("/proc/self/ns/mnt", os.O_RDONLY),
                                (".", os.O_PATH | os.O_DIRECTORY)):
                opened.append(os.open(name, flags | os.O_CLOEXEC))
            request = _request(args)
            fds = (0, 1, 2, *opened)
            sent = sock.sendmsg([request[:4]], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                                 b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds))])
            if sent != 4:
                return None
            sock.sendall(request[4:])
        except OSError:
            return None  # no server, or a descriptor we cannot pass (a closed stdin): the CLI here
        finally:
            for fd in opened:
                os.close(fd)
        return _wait(sock)
    finally:
        sock.close()


def _wait(sock: "object") -> int | None:
    """Pass signals on until the reply comes; the wait status it carries (None: not served)."""
    import _signal

    def relay(signum: int, _frame: object) -> None:
        try:
            sock.send(bytes([signum]))  # type: ignore[attr-defined]
        except OSError:
            pass  # the server is gone: the command's own status still comes (it holds the connection)

    for sig in FORWARDED_SIGNALS:
        _signal.signal(sig, relay)
    try:
        kind = _recv_exact(sock, 1)
    except OSError:
        kind = b""
    if kind == NOT_SERVED:
        for sig in FORWARDED_SIGNALS:
            _signal.signal(sig, _signal.SIG_DFL)
        _signal.signal(2, _signal.default_int_handler)
        return None
    if kind != EXITED:
        os.write(2, b"netkit: error: the runtime server closed the connection before the command ended\n")
        return 1 << 8
    status = _recv_exact(sock, 4)
    return int.from_bytes(status, "big", signed=True) if len(status) == 4 else 1 << 8


def _exit_like(status: int) -> None:
    """End this process the way the command ended: its exit code, or the same signal."""
    if os.WIFSIGNALED(status):
        import _signal

        sig = os.WTERMSIG(status)
        _signal.signal(sig, _signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF if os.WIFEXITED(status) else 1)


def main() -> None:
    """The ``netkit`` console script and ``python -m netkit``."""
    args = sys.argv[1:]
    if wanted(args, os.environ):
        status = forward(args, socket_path(os.environ))
        if status is not None:
            sys.stdout.flush()
            _exit_like(status)
    if sys.flags.no_site and "site" not in sys.modules:
        import site  # started by SCRIPT (-S): the full CLI needs site-packages and its .pth files

        site.main()
    from netkit.cli.commands import main as cli

    cli()


# The `netkit` command as ``write_script`` writes it: no site import (-S), so a served command skips
# site and an editable install's import hook (~15 ms of every command, measured); ``main`` runs
# site itself before the full CLI.
SCRIPT = """#!{python} -S
# The netkit command, written by `python -m netkit.cli.thin PATH`; regenerate rather than edit.
import sys
sys.path[:0] = {paths!r}
from netkit.cli.thin import main
sys.exit(main())
"""


def write_script(path: str) -> None:
    """Write the ``netkit`` command at ``path`` for this interpreter and this code tree."""
    from netkit import fileio
    from netkit.launch import executable

    text = SCRIPT.format(python=sys.executable, paths=executable.import_paths())
    fileio.write_atomic(path, text.encode(), mode=0o755)
    os.chmod(path, 0o755)  # whatever the umask


if __name__ == "__main__":  # python -m netkit.cli.thin PATH
    write_script(sys.argv[1])
