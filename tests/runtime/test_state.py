"""Container records on disk: records written by earlier netkit versions load, show and save unchanged.

The files under records/ were written by netkit at 0d85a86 (before the Container type): a
detached container publishing a port (``web``), one joined to its network (``side``) and one that
exited with 3 on a user network with a fixed address (``done``).  ``ps-a.txt`` and
``inspect.json`` are what that version's `netkit ps -a` and `netkit inspect web side done` printed
for them once their processes were gone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from netkit.runtime import state
from netkit.runtime.root import Root

RECORDS = Path(__file__).parent / "records"
NAMES = ("web", "side", "done")


def _plant(root: Root) -> dict[str, str]:
    """The old records under ``root``; name -> container ID."""
    ids = {}
    for name in NAMES:
        cid = json.loads((RECORDS / f"{name}.json").read_text())["id"]
        os.makedirs(root.container_dir(cid))
        shutil.copy(RECORDS / f"{name}.json", state.path(root, cid))
        ids[name] = cid
    return ids


def test_an_old_record_loads_into_its_fields(tmp_path: Path) -> None:
    root = Root(str(tmp_path))
    ids = _plant(root)
    web = state.load(root, ids["web"])
    assert (web.name, web.net_kind, web.network, web.owner) == ("web", "bridge", "bridge", "")
    assert web.ports == [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""}]
    assert (web.dns, web.labels, web.env["A"]) == (["10.0.0.53"], {"team": "net"}, "b")
    assert web.addresses == ["172.17.0.2/16"] and web.cni_result["ips"][0]["address"] == "172.17.0.2/16"
    # It was running when written; its process is long gone, so it loads as exited, unknown code.
    assert (web.state, web.exit_code, state.alive(web)) == ("exited", -1, False)
    side = state.load(root, ids["side"])
    assert (side.net_kind, side.owner, side.network) == ("container", ids["web"], "container:web")
    done = state.load(root, ids["done"])
    assert (done.state, done.exit_code, done.ip, done.error) == ("exited", 3, "10.77.0.9", None)
    assert [c.name for c in state.all_records(root)] == ["web", "side", "done"]  # oldest first


def test_an_old_record_is_saved_back_byte_for_byte(tmp_path: Path) -> None:
    root = Root(str(tmp_path))
    cid = _plant(root)["done"]  # exited: loading changes nothing in it
    state.save(root, state.load(root, cid))
    assert Path(state.path(root, cid)).read_bytes() == (RECORDS / "done.json").read_bytes()


@pytest.mark.parametrize("command, expected", [(["ps", "-a"], "ps-a.txt"),
                                               (["inspect", *NAMES], "inspect.json")])
def test_ps_and_inspect_show_old_records_as_before(tmp_path: Path, command: list[str], expected: str) -> None:
    root = Root(str(tmp_path))
    _plant(root)
    proc = subprocess.run([sys.executable, "-m", "netkit", "--root", root.path, *command],
                          capture_output=True, text=True, check=True)
    assert proc.stdout == (RECORDS / expected).read_text()


def test_a_record_just_created_has_none_of_the_later_fields(tmp_path: Path) -> None:
    root = Root(str(tmp_path))
    ctr = state.Container(id="c" * 64, name="n", command=["true"], env={}, cwd="/", hostname="h", network="none",
                          net_kind="none", created=1.0, log="/l", netns="/n")
    state.save(root, ctr)
    written = json.loads(Path(state.path(root, ctr.id)).read_text())
    assert list(written) == ["id", "name", "command", "env", "cwd", "hostname", "network", "net_kind", "owner",
                             "ports", "ip", "dns", "labels", "state", "created", "pid", "auto_remove", "log",
                             "netns"]
    assert state.load(root, ctr.id) == ctr
