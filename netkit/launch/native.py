"""The C launcher (launcher.c): compiled per plugin by `netkit cni install`, recognised by its marker.

Why a C launcher: a Python launcher spends ~11-14 ms starting its interpreter before it can hand a
request to the warm agent, more than the reference Go plugins take for a whole bridge+IPAM ADD.  The
C launcher forwards the request itself and execs the Python launcher (moved to ``<bin>/.netkit/<name>``)
for everything else, so all the logic stays in Python.

Compiled once per plugin, the plugin's name, version, socket and fallback path defined on the
command line: each binary is self-contained (a copied or renamed launcher still knows its plugin,
unlike one binary reading argv[0]), and the compiles run in parallel (measured in the report).
Standard library only; imported by a launcher only when it meets an ELF file (invoker.is_own_launcher).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing's own import costs a launcher ~3 ms; mypy honours this spelling
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launcher.c")
FALLBACK_DIR = ".netkit"  # inside the bin dir: hidden, so no runtime's CNI_PATH lookup finds it
MARK = b"netkit-c-launcher/1 "  # the start of every C launcher's marker, whatever its install
ELF = b"\x7fELF"
MAX_SIZE = 4 << 20  # a launcher is ~16 KiB: a bigger file is not one of ours, and is not read whole
CFLAGS = ("-O2", "-s")  # no -Werror here: a newer compiler's new warning must not cost the fast path
COMPILE_TIMEOUT_S = 120
_source_digest: list[int] = []


def fallback_path(exe: str) -> str:
    """Where the C launcher at ``exe`` finds the Python launcher it execs (an absolute path)."""
    exe = os.path.abspath(exe)
    return os.path.join(os.path.dirname(exe), FALLBACK_DIR, os.path.basename(exe))


def _digest() -> int:
    """launcher.c's CRC-32, so that a launcher compiled from other source is not taken for ours."""
    if not _source_digest:
        import zlib  # here: only a process meeting a C launcher needs it

        with open(SOURCE, "rb") as f:
            _source_digest.append(zlib.crc32(f.read()))
    return _source_digest[0]


def marker(name: str, python: str, fallback: str, socket: str) -> bytes:
    """What the C launcher for ``name`` carries: everything its behaviour depends on besides its source."""
    from netkit import __version__

    return MARK + b"version=%s plugin=%s python=%s fallback=%s socket=%s source=%08x" % (
        __version__.encode(), name.encode(), os.fsencode(python), os.fsencode(fallback), os.fsencode(socket),
        _digest())


def read_binary(path: str) -> bytes | None:
    """The whole file at ``path`` when it is an ELF file of a launcher's size, else None."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SIZE + 1)
    except OSError:
        return None
    return data if data.startswith(ELF) and len(data) <= MAX_SIZE else None


def c_literal(text: bytes) -> str:
    """``text`` as a C string literal: printable ASCII as is, everything else in octal escapes."""
    out = []
    for byte in text:
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= byte < 0x7F and ch != "?":  # "?": no trigraph can form
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def compile_args(cc: Sequence[str], name: str, python: str, fallback: str, socket: str, output: str) -> list[str]:
    """The compiler's argument list for the C launcher of plugin ``name``."""
    from netkit import __version__
    from netkit.agent import client
    from netkit.cni import version as versions

    prefix = f'{{"version":{client.json_string(__version__)},"plugin":{client.json_string(name)},"env":{{'
    defines = {"NETKIT_HEADER_PREFIX": prefix.encode("ascii"), "NETKIT_SOCKET": os.fsencode(socket),
               "NETKIT_FALLBACK": os.fsencode(fallback), "NETKIT_MARKER": marker(name, python, fallback, socket),
               # VERSION's answer (cni/handler.version_text): the C launcher gives it without an interpreter.
               "NETKIT_SUPPORTED": ",".join(versions.SUPPORTED).encode(), "NETKIT_LATEST": versions.LATEST.encode()}
    return [*cc, *CFLAGS, *(f"-D{k}={c_literal(v)}" for k, v in defines.items()), "-o", output, SOURCE]


def compiler() -> list[str]:
    """The C compiler to run: $CC (split into words, no shell) or ``cc``."""
    import shlex

    return shlex.split(os.environ.get("CC", "")) or ["cc"]


def build(targets: dict[str, str], python: str, socket: str, before: Callable[[], None]) -> str:
    """Compile the C launcher of every plugin in ``targets`` (name -> executable path), call ``before``
    (it writes the Python launchers they exec), then move each into place atomically; "" on success,
    else why not (nothing then written nor replaced).

    The compiles run at once (one process each); a failure of any leaves every target as it was, so
    an install is all C launchers or all Python ones.
    """
    import subprocess  # here: a plugin exec imports this module and never compiles

    cc = compiler()
    procs: list[tuple[str, str, subprocess.Popen[bytes]]] = []
    why = ""
    try:
        for name, exe in targets.items():
            tmp = os.path.join(os.path.dirname(exe), f".{name}.cc.{os.getpid()}")
            args = compile_args(cc, name, python, fallback_path(exe), socket, tmp)
            try:
                proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
            except OSError as e:
                why = f"no C compiler ({cc[0]}: {e.strerror})"
                break
            procs.append((exe, tmp, proc))
        for exe, tmp, proc in procs:
            try:
                _, err = proc.communicate(timeout=COMPILE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                why = why or f"{cc[0]} took longer than {COMPILE_TIMEOUT_S} s"
                continue
            if proc.returncode != 0 and not why:
                last = err.decode(errors="replace").strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
                why = f"{cc[0]} failed: {last[0]}"
        if not why:
            before()
            for exe, tmp, _ in procs:
                os.chmod(tmp, 0o755)
                os.replace(tmp, exe)
        return why
    finally:
        for _, tmp, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
