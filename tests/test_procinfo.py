"""netkit.procinfo: the start time that tells a live process from a dead one or a reused PID."""

from __future__ import annotations

import os
import signal
import time

from netkit import procinfo


def _stat(pid: int) -> bytes:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read()


def _state(pid: int) -> str:
    return _stat(pid).rsplit(b")", 1)[1].split()[0].decode()


def test_a_running_process_has_a_stable_start_time() -> None:
    first = procinfo.start_time(os.getpid())
    assert first is not None and first.isdigit() and procinfo.start_time(os.getpid()) == first


def test_a_command_name_with_parentheses_and_spaces_does_not_shift_the_fields() -> None:
    go_r, go_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(go_r, 1)
        with open("/proc/self/comm", "w") as f:
            f.write("a) b (c) d")
        signal.pause()
        os._exit(0)
    try:
        before = procinfo.start_time(child)
        os.write(go_w, b"x")
        while b"a) b (c) d" not in _stat(child):
            time.sleep(0.01)
        assert before is not None and procinfo.start_time(child) == before
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        os.close(go_r)
        os.close(go_w)


def test_a_zombie_and_a_reaped_process_count_as_gone() -> None:
    child = os.fork()
    if child == 0:
        os._exit(0)
    while _state(child) != "Z":  # exited, not yet reaped
        time.sleep(0.01)
    assert procinfo.start_time(child) is None
    os.waitpid(child, 0)
    assert procinfo.start_time(child) is None
