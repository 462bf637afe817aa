"""What /proc shows of one run: its processes, their CPU time, its mounts."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import time
from typing import Callable, Iterator

_libc = ctypes.CDLL(None, use_errno=True)
_MNT_DETACH = 2


def cmdline(pid: int) -> str:
    """The command line of ``pid``, arguments joined by spaces ("" for a kernel thread or a zombie)."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode(errors="replace").strip()


def processes_of_run(tmp: str, inodes: set[int]) -> dict[int, str]:
    """pid -> command line of the processes a run made: ``tmp`` in their command line, cwd or root,
    or living in one of its sandbox network namespaces (``inodes``)."""
    found = {}
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        try:
            cmd = cmdline(pid)
        except OSError:
            continue
        hit = bool(tmp) and tmp in cmd
        for link in ("cwd", "root"):
            with contextlib.suppress(OSError):
                hit = hit or bool(tmp) and os.readlink(f"/proc/{pid}/{link}").startswith(tmp)
        with contextlib.suppress(OSError):
            hit = hit or os.stat(f"/proc/{pid}/ns/net").st_ino in inodes
        if hit:
            found[pid] = cmd or "?"
    return found


def reap(scan: Callable[[], dict[int, str]], timeout: float) -> list[str]:
    """Wait until ``scan()`` finds nothing (conmon's clean-up call may finish just after ``rm -f``), then
    SIGKILL what is left; a problem line per killed process.  ``timeout`` only stops a hang."""
    deadline = time.monotonic() + timeout
    left = scan()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = scan()
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return [f"process {pid} still running, killed: {cmd[:200]}" for pid, cmd in left.items()]


def cpu_ticks(pid: int) -> int:
    """utime + stime of ``pid`` in clock ticks (exited threads included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])       # fields 14 and 15 of proc(5)


def read_syscalls(pid: int) -> int:
    """Read syscalls ``pid`` made so far (``syscr`` of /proc/PID/io, exited threads included)."""
    with open(f"/proc/{pid}/io") as f:
        return int(next(line for line in f if line.startswith("syscr:")).split()[1])


def _unescape(field: str) -> str:
    """A mountinfo field with its octal escapes (\\040 for a space) decoded."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_table() -> Iterator[tuple[str, str, str]]:
    """(where, what, filesystem type) of every mount this process sees (/proc/self/mountinfo)."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            yield _unescape(fields[4]), fields[3], fields[fields.index("-") + 1]


def unmount_under(top: str) -> list[str]:
    """Detach every mount below ``top`` (podman's overlay and shm, netns bind mounts), deepest first;
    a problem line per failure."""
    points = [where for where, _, _ in mount_table()]
    problems = []
    for mp in sorted((p for p in points if p.startswith(top + "/")), key=len, reverse=True):
        if _libc.umount2(mp.encode(), _MNT_DETACH) != 0:
            problems.append(f"umount {mp}: {os.strerror(ctypes.get_errno())}")
    return problems
