"""Starting a container's process: exec form, PID 1 of new PID, mount and UTS namespaces.

    supervisor ── fork ──> runner: unshare(CLONE_NEWPID) ── fork ──> init (PID 1): setns(net),
                                                                      unshare(mnt, uts), fresh /proc
                                                                      and /sys, hostname, exec CMD

The runner exists because after unshare(CLONE_NEWPID) every later fork of the caller lands in the
new PID namespace: the supervisor must stay able to fork (CNI DEL on --rm).  The runner only waits
for init and exits with its status (128+N when killed by signal N, as Docker reports).  CMD is
exec'd directly, no shell in between, so it is the container's PID 1 and gets the signals.  With
``--init`` init stays PID 1 as a small init and CMD is its child (runtime/init.py).
"""

from __future__ import annotations

import ctypes
import os
import signal
from typing import NamedTuple

from netkit import errors
from netkit.net import netns
from netkit.net.netns import CLONE_NEWNET, CLONE_NEWNS
from netkit.runtime.state import ContainerError

CLONE_NEWUTS = 0x04000000
CLONE_NEWPID = 0x20000000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_BIND, _MS_REC, _MS_PRIVATE = 2, 4, 8, 0x1000, 0x4000, 1 << 18
_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    _check(_libc.mount(source.encode() if source else None, target.encode(),
                       fstype.encode() if fstype else None, flags, None), f"mount {target}")


class Spec(NamedTuple):
    """What init becomes."""

    argv: list[str]
    env: dict[str, str]
    netns: str  # "" = stay in the caller's network namespace (host mode)
    own_sysfs: bool  # mount a fresh /sys showing the container's interfaces
    hostname: str
    binds: list[tuple[str, str]]  # (file of the root, file in the container) bind mounts
    cwd: str
    init: bool = False  # --init: stay PID 1 as a small init, CMD its child (runtime/init.py)


def _init(spec: Spec, report: int) -> None:
    """In the new PID namespace: finish the namespaces, then exec CMD.  Never returns."""
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)  # Python ignores SIGPIPE; CMD must not inherit that
        if spec.netns:
            netns.setns(spec.netns, CLONE_NEWNET)
        _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare")
        _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
        _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
        if spec.own_sysfs:
            _mount("sysfs", "/sys", "sysfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
        for source, target in spec.binds:
            if os.path.exists(target):
                _mount(source, target, None, _MS_BIND)
        name = spec.hostname.encode()
        _check(_libc.sethostname(name, len(name)), "sethostname")
        os.chdir(spec.cwd)
        if spec.init:
            from netkit.runtime import init  # it imports this module: not at the top

            init.become()  # returns in CMD's process only
        os.execvpe(spec.argv[0], spec.argv, spec.env)
    except OSError as exc:
        missing = isinstance(exc, FileNotFoundError) and "/" not in spec.argv[0]
        msg = f'exec: "{spec.argv[0]}": executable file not found in $PATH' if missing else str(exc)
        os.write(report, msg.encode(errors="replace")[:1000])
    except BaseException as exc:  # noqa: BLE001 - anything but exec success is reported
        os.write(report, repr(exc).encode(errors="replace")[:1000])
    os._exit(127)


def exit_code(status: int) -> int:
    """Docker's convention: the exit status, or 128+N when killed by signal N."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def spawn(spec: Spec) -> tuple[int, int]:
    """Start CMD; return (runner pid, init's pid as seen from here).  Raises if exec failed."""
    info_r, info_w = os.pipe()
    runner = os.fork()
    if runner == 0:
        os.close(info_r)
        try:
            _check(_libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")
            err_r, err_w = os.pipe2(os.O_CLOEXEC)  # closes on exec: EOF with no data = exec worked
            init = os.fork()
            if init == 0:
                os.close(err_r)
                _init(spec, err_w)
            os.close(err_w)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)  # the supervisor decides what init gets
            failure = os.read(err_r, 1000)
            os.write(info_w, f"{init}\n".encode() + (b"E" + failure if failure else b""))
            os.close(info_w)
            _, status = os.waitpid(init, 0)
            os._exit(exit_code(status) & 0xFF)
        except BaseException as exc:  # noqa: BLE001 - reported through the pipe
            os.write(info_w, f"0\nE{exc}".encode(errors="replace"))
            os._exit(127)
    os.close(info_w)
    chunks = []
    while chunk := os.read(info_r, 4096):
        chunks.append(chunk)
    os.close(info_r)
    head, _, failure = b"".join(chunks).partition(b"\n")
    if failure.startswith(b"E") or not head.strip().isdigit() or int(head) <= 0:
        os.waitpid(runner, 0)
        raise ContainerError("failed to start the container process", failure[1:].decode(errors="replace"))
    return runner, int(head)


def enter(pid: int, argv: list[str], env: dict[str, str], cwd: str) -> int:
    """Run ``argv`` inside the namespaces of process ``pid`` (net, uts, mount, pid); its exit code."""
    child = os.fork()
    if child == 0:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
                signal.signal(sig, signal.SIG_DFL)
            # The container's root directory, opened before joining: setns() into a mount namespace
            # puts the caller at that namespace's root, which is not the container's when the
            # runtime itself runs under a chroot (as `nsenter --root` knows).
            root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            for ns, flag in (("net", CLONE_NEWNET), ("uts", CLONE_NEWUTS), ("pid", CLONE_NEWPID), ("mnt", CLONE_NEWNS)):
                netns.setns(f"/proc/{pid}/ns/{ns}", flag)
            os.fchdir(root)
            os.chroot(".")
            os.close(root)
            inner = os.fork()  # joining a PID namespace takes effect for children only
            if inner == 0:
                try:
                    os.chdir(cwd if os.path.isdir(cwd) else "/")
                    os.execvpe(argv[0], argv, env)
                except OSError as exc:
                    os.write(2, f"{errors.LINE_PREFIX}exec {argv[0]}: {exc.strerror}\n".encode())
                    os._exit(127)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            _, status = os.waitpid(inner, 0)
            os._exit(exit_code(status) & 0xFF)
        except BaseException as exc:  # noqa: BLE001
            os.write(2, f"{errors.LINE_PREFIX}{exc}\n".encode(errors="replace"))
            os._exit(126)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _, status = os.waitpid(child, 0)
    return exit_code(status)
