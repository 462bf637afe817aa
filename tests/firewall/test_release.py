"""Netfilter sockets released off the request's path (netkit/firewall/release.py)."""

from __future__ import annotations

import os
import threading

import pytest

from netkit.firewall import nftgen, release
from netkit.net import netns
from tests.sandbox import Sandbox


def _netns_inode() -> int:
    return os.stat(netns.SELF).st_ino


def test_release_runs_later_in_the_process_namespace_not_the_callers(
        inproc: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(release, "_pending", None)  # its thread is started from inside the caller's namespace
    ran = threading.Event()
    seen: list[int] = []
    home = _netns_inode()

    def note() -> None:
        seen.append(_netns_inode())
        ran.set()

    def request() -> None:  # as an agent's worker: in the caller's namespace, the main thread at home
        with netns.entered(inproc.host.path):
            assert _netns_inode() != home
            release.later(note)

    worker = threading.Thread(target=request)
    worker.start()
    worker.join()
    assert ran.wait(60)  # a hang guard: the release thread runs it at once
    # The release thread must not sit in (and keep alive) a caller's namespace.
    assert seen == [home]


def test_generation_read_leaves_no_socket_open_once_released(inproc: Sandbox) -> None:
    def netlink_fds() -> int:
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                    count += 1
            except OSError:
                continue
        return count

    flushed = threading.Event()
    release.later(flushed.set)
    assert flushed.wait(60)
    before = netlink_fds()
    with netns.entered(inproc.host.path):
        gen = nftgen.current()
    assert gen is not None and gen.gen > 0
    done = threading.Event()
    release.later(done.set)  # one thread, in order: everything queued before has been released
    assert done.wait(60)
    assert netlink_fds() == before
