"""Running a conflist: order, prevResult, and the rollback of a failed ADD (against a fake executor)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from netkit import errors
from netkit.cni import chain
from tests.cni.fake_exec import FakeExec, result_of


def _conflist(*types: str) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "fakenet", "plugins": [{"type": t} for t in types]}


def test_a_failed_add_in_a_list_takes_back_the_plugins_already_added(tmp_path: Path) -> None:
    fake = FakeExec({"first": {"ADD": (result_of("10.1.0.2/24"), 0)},
                     "second": {"ADD": (result_of("10.1.0.3/24"), 0)},
                     "third": {"ADD": (b'{"code": 7, "msg": "bad config"}', 1)}})
    att = chain.Attachment("c1", "/run/netns/x")
    with pytest.raises(errors.CNIError) as info:
        chain.add(_conflist("first", "second", "third"), att, ["/nowhere"], str(tmp_path), fake)
    assert info.value.code == 7
    assert [(name, command) for name, command, _ in fake.calls] == [
        ("first", "ADD"), ("second", "ADD"), ("third", "ADD"), ("second", "DEL"), ("first", "DEL")]
    # Both DELs see the result so far (the last successful ADD's), as a DEL of the whole list would.
    assert [conf["prevResult"]["ips"] for _, command, conf in fake.calls if command == "DEL"] == [
        [{"address": "10.1.0.3/24"}]] * 2
    assert chain.cached_attachments(str(tmp_path), "fakenet") == []


def test_a_list_runs_in_order_and_deletes_in_reverse(tmp_path: Path) -> None:
    fake = FakeExec({"first": {"ADD": (result_of("10.1.0.2/24"), 0)},
                     "second": {"ADD": (result_of("10.1.0.2/24"), 0)}})
    att = chain.Attachment("c1", "/run/netns/x")
    conflist = _conflist("first", "second")
    chain.add(conflist, att, ["/nowhere"], str(tmp_path), fake)
    chain.delete(conflist, att, ["/nowhere"], str(tmp_path), fake)
    assert [(name, command) for name, command, _ in fake.calls] == [
        ("first", "ADD"), ("second", "ADD"), ("second", "DEL"), ("first", "DEL")]
    assert "prevResult" not in fake.calls[0][2] and fake.calls[1][2]["prevResult"]["ips"] == [
        {"address": "10.1.0.2/24"}]
