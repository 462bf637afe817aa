"""Entering namespaces and telling a namespace from anything else."""

from __future__ import annotations

import os
import threading

import pytest

from netkit import errors
from netkit.net import netns
from netkit.net.netlink import IPRoute
from tests.sandbox import Sandbox


def _links() -> list[str]:
    with IPRoute() as ipr:
        return [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]


def test_entered_switches_this_thread_only_and_restores(box: Sandbox) -> None:
    box.host.run("ip", "link", "add", "only-here", "type", "veth", "peer", "name", "only-here2", check=True)
    seen_elsewhere: list[list[str]] = []
    go = threading.Event()

    def other_thread() -> None:  # started before entering: stays in the original namespace
        go.wait(60)  # a hang guard: set as soon as the main thread has entered
        seen_elsewhere.append(_links())

    t = threading.Thread(target=other_thread)
    t.start()
    with netns.entered(box.host.path):
        assert "only-here" in _links()
        go.set()
        t.join()
    assert "only-here" not in _links()
    assert "only-here" not in seen_elsewhere[0]


def test_entered_restores_after_an_exception(box: Sandbox) -> None:
    before = os.stat(netns.SELF).st_ino
    with pytest.raises(RuntimeError), netns.entered(box.host.path):
        raise RuntimeError("boom")
    assert os.stat(netns.SELF).st_ino == before


def test_open_netns_tells_missing_from_not_a_namespace(tmp_path: os.PathLike[str]) -> None:
    regular = os.path.join(str(tmp_path), "file")
    open(regular, "w").close()
    with pytest.raises(errors.CNIError) as missing:
        netns.open_netns(os.path.join(str(tmp_path), "nope"))
    with pytest.raises(errors.CNIError) as not_ns:
        netns.open_netns(regular)
    assert (missing.value.code, not_ns.value.code) == (errors.UNKNOWN_CONTAINER, errors.INVALID_ENV)
    assert not netns.exists(regular)


def test_require_other_refuses_the_current_namespace(box: Sandbox) -> None:
    netns.require_other(box.host.path)
    with pytest.raises(errors.CNIError) as exc:
        netns.require_other("/proc/self/ns/net")
    assert exc.value.code == errors.INVALID_ENV


def test_setns_by_path_joins_on_this_thread_and_names_the_path_when_refused(box: Sandbox,
                                                                           tmp_path: os.PathLike[str]) -> None:
    box.host.run("ip", "link", "add", "setns-here", "type", "veth", "peer", "name", "setns-here2", check=True)
    seen: list[list[str]] = []
    refused: list[OSError] = []
    regular = os.path.join(str(tmp_path), "file")
    open(regular, "w").close()

    def worker() -> None:  # a thread of its own: the test's thread never leaves its namespace
        try:
            netns.setns(regular)
        except OSError as exc:
            refused.append(exc)
        netns.setns(box.host.path)
        seen.append(_links())
        netns.join_process_namespace()

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert "setns-here" in seen[0] and "setns-here" not in _links()
    assert refused and f"setns {regular}" in str(refused[0])
