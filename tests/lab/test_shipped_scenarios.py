"""Every scenario under scenarios/ comes up, passes its checks, converges on a second up, fails
`lab test` when a check expects the wrong thing, and goes down leaving nothing."""

from __future__ import annotations

import json
import os
import re

import pytest
import yaml

from tests.lab.conftest import SHIPPED, Lab, container_pids, lab_leftovers, scenario


def _containers(lab: Lab) -> dict[str, str]:
    view = json.loads(lab("inspect", "--json").stdout)
    return {f"{h}/{c['name']}": c["id"] for h, host in view.items() for c in host["containers"]}


def _flipped(path: str, dest: str) -> str:
    """A copy of the scenario whose first check expects the opposite."""
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    first = doc["checks"][0]
    first["expect"] = "blocked" if first.get("expect", "ok") == "ok" else "ok"
    first.pop("body", None)
    first.pop("bodies", None)
    out = os.path.join(dest, os.path.basename(path))
    with open(out, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f)
    return out


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenario_passes_converges_fails_on_wrong_expectation_and_leaves_nothing(
        name: str, make_lab: "callable", tmp_path: os.PathLike[str]) -> None:  # type: ignore[valid-type]
    lab = make_lab(scenario(name))
    lab("up")
    result = lab("test")
    assert result.stdout.rstrip().endswith(" 0 failed"), result.stdout
    # No failed row and no failed cell ("SERVFAIL" in a DNS check's detail is an answer, not a verdict).
    assert not re.search(r"(?m)^FAIL\s|\d+/\d+ FAIL", result.stdout), result.stdout

    before = _containers(lab)
    again = lab("up")
    assert "started" not in again.stdout, again.stdout
    assert _containers(lab) == before, "a second up must keep running containers"
    assert lab("test", check=False).returncode == 0

    wrong = lab("test", path=_flipped(scenario(name), str(tmp_path)), check=False)
    assert wrong.returncode == 1, wrong.stdout
    assert "1 failed" in wrong.stdout

    pids = container_pids(lab)
    assert len(pids) == len(before)
    lab("down")
    assert lab_leftovers(lab, pids) == []
    assert lab("test", check=False).returncode == 1  # a lab that is down has nothing to test
