"""`netkit rename`: the record and the embedded DNS take the new name at once (Docker's rename)."""

from __future__ import annotations

from tests.runtime.conftest import Runtime


def _getent(rt: Runtime, ctr: str, name: str) -> list[str]:
    proc = rt("exec", ctr, "--", "getent", "ahostsv4", name, check=False)
    return sorted({line.split()[0] for line in proc.stdout.splitlines()}) if proc.returncode == 0 else []


def test_renamed_container_resolves_by_its_new_name_only_on_every_network(rt: Runtime) -> None:
    rt("network", "create", "--subnet", "10.61.0.0/24", "front")
    rt("network", "create", "--subnet", "10.62.0.0/24", "back")
    rt("run", "-d", "--name", "web", "--network", "front", "--network", "back", "--network-alias", "site",
       "--", "sleep", "300")
    rt("run", "-d", "--name", "client", "--network", "front", "--", "sleep", "300")
    rt("run", "-d", "--name", "other", "--network", "back", "--", "sleep", "300")
    before = _getent(rt, "client", "web")
    assert before

    rt("rename", "web", "api")
    assert _getent(rt, "client", "api") == before
    assert _getent(rt, "client", "web") == []
    assert _getent(rt, "client", "site") == before  # its aliases stay
    assert _getent(rt, "other", "api")  # and on its second network too
    assert "api" in rt("ps").stdout.split()
    rt("stop", "-t", "0", "api")  # the new name is the container's name for every verb


def test_rename_refuses_a_taken_invalid_or_same_name_in_one_line(rt: Runtime) -> None:
    rt("run", "-d", "--name", "a", "--", "sleep", "300")
    rt("run", "-d", "--name", "b", "--", "sleep", "300")
    for new, words in (("b", 'the container name "b" is already in use'), ("x y", "invalid container name"),
                       ("a", "same name")):
        proc = rt("rename", "a", new, check=False)
        assert proc.returncode == 1 and words in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1
    missing = rt("rename", "nope", "c", check=False)
    assert missing.returncode == 1 and "no such container: nope" in missing.stderr
    assert {"a", "b"} <= set(rt("ps").stdout.split())
