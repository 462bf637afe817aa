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
    assert web.addresses == ["172.17.0.2/16"]
    # Its one network is its one endpoint, eth0, the primary.
    (ep,) = web.endpoints
    assert (ep.network, ep.ifname, ep.ip, ep.aliases, ep is web.primary) == ("bridge", "eth0", "", [], True)
    assert ep.cni_result["ips"][0]["address"] == "172.17.0.2/16" and ep.addresses == ["172.17.0.2/16"]
    # It was running when written; its process is long gone, so it loads as exited, unknown code.
    assert (web.state, web.exit_code, state.alive(web)) == ("exited", -1, False)
    side = state.load(root, ids["side"])
    assert (side.net_kind, side.owner, side.network) == ("container", ids["web"], "container:web")
    done = state.load(root, ids["done"])
    assert (done.state, done.exit_code, done.ip, done.error) == ("exited", 3, "10.77.0.9", None)
    assert [(e.network, e.ip) for e in done.endpoints] == [("n1", "10.77.0.9")]
    assert [c.name for c in state.all_records(root)] == ["web", "side", "done"]  # oldest first


def test_an_old_record_is_saved_back_byte_for_byte(tmp_path: Path) -> None:
    root = Root(str(tmp_path))
    cid = _plant(root)["done"]  # exited: loading changes nothing in it
    state.save(root, state.load(root, cid))
    assert Path(state.path(root, cid)).read_bytes() == (RECORDS / "done.json").read_bytes()


def _netkit(root: Root, *args: str) -> str:
    return subprocess.run([sys.executable, "-m", "netkit", "--root", root.path, *args],
                          capture_output=True, text=True, check=True).stdout


def test_ps_shows_old_records_as_before(tmp_path: Path) -> None:
    root = Root(str(tmp_path))
    _plant(root)
    assert _netkit(root, "ps", "-a") == (RECORDS / "ps-a.txt").read_text()


def _within(old: object, new: object) -> bool:
    """True when every key of ``old`` is in ``new`` with the same value (recursively)."""
    if isinstance(old, dict):
        return isinstance(new, dict) and all(k in new and _within(v, new[k]) for k, v in old.items())
    if isinstance(old, list):
        return isinstance(new, list) and len(old) == len(new) and all(map(_within, old, new))
    return old == new


def test_inspect_of_old_records_keeps_every_earlier_key_and_adds_dockers(tmp_path: Path) -> None:
    root = Root(str(tmp_path))
    _plant(root)
    shown = json.loads(_netkit(root, "inspect", *NAMES))
    assert _within(json.loads((RECORDS / "inspect.json").read_text()), shown)
    web, side, done = shown
    assert web["NetworkSettings"]["IPAddress"] == "172.17.0.2" and web["NetworkSettings"]["IPPrefixLen"] == 16
    assert web["NetworkSettings"]["Networks"]["bridge"]["Aliases"] is None  # no names on the default bridge
    assert side["NetworkSettings"]["Networks"] == {}  # joined another's namespace: no network of its own
    n1 = done["NetworkSettings"]["Networks"]["n1"]
    assert (n1["IPAddress"], n1["Gateway"], n1["MacAddress"]) == ("10.77.0.9", "10.77.0.1", "fe:5b:4f:38:ae:05")
    assert n1["IPAMConfig"] == {"IPv4Address": "10.77.0.9"} and n1["Aliases"] == [done["Id"][:12]]
    assert _netkit(root, "inspect", "-f", "{{.Name}} {{.NetworkSettings.Networks.n1.IPAddress}}", "done") == \
        "done 10.77.0.9\n"


def test_a_record_just_created_has_none_of_the_later_fields(tmp_path: Path) -> None:
    root = Root(str(tmp_path))
    ctr = state.Container(id="c" * 64, name="n", command=["true"], env={}, cwd="/", hostname="h", network="none",
                          net_kind="none", created=1.0, log="/l", netns="/n",
                          endpoints=[state.Endpoint(network="none")])
    state.save(root, ctr)
    written = json.loads(Path(state.path(root, ctr.id)).read_text())
    assert list(written) == ["id", "name", "command", "env", "cwd", "hostname", "network", "net_kind", "owner",
                             "ports", "ip", "dns", "labels", "state", "created", "pid", "auto_remove", "log",
                             "netns"]
    assert state.load(root, ctr.id) == ctr


def _two_networks(root: Root) -> state.Container:
    result = {"ips": [{"address": "10.1.0.2/24", "gateway": "10.1.0.1"}]}
    return state.Container(
        id="d" * 64, name="m", command=["true"], env={}, cwd="/", hostname="h", network="a", net_kind="bridge",
        created=1.0, log="/l", netns="/n",
        endpoints=[state.Endpoint(network="a", ip="10.1.0.2", cni_result=result, addresses=["10.1.0.2/24"]),
                   state.Endpoint(network="b", ifname="eth1", aliases=["db"], addresses=["10.2.0.2/24"])])


def test_a_record_on_two_networks_keeps_the_primary_in_the_earlier_keys(tmp_path: Path) -> None:
    root = Root(str(tmp_path))
    ctr = _two_networks(root)
    state.save(root, ctr)
    written = json.loads(Path(state.path(root, ctr.id)).read_text())
    # An earlier netkit reading this file still finds the primary endpoint where it always was.
    assert (written["network"], written["ip"], written["addresses"]) == ("a", "10.1.0.2", ["10.1.0.2/24"])
    assert [e["network"] for e in written["endpoints"]] == ["a", "b"] and list(written)[-1] == "endpoints"
    loaded = state.load(root, ctr.id)
    assert loaded == ctr and loaded.addresses == ["10.1.0.2/24", "10.2.0.2/24"]
    # Back to one endpoint with nothing the earlier keys cannot hold: the file is the earlier format again.
    loaded.endpoints.pop()
    state.save(root, loaded)
    assert "endpoints" not in json.loads(Path(state.path(root, ctr.id)).read_text())
    # None left (all disconnected): said explicitly, not read back as the earlier keys' one endpoint.
    loaded.endpoints.clear()
    state.save(root, loaded)
    assert state.load(root, ctr.id).endpoints == [] and state.load(root, ctr.id).primary is None


@pytest.mark.parametrize("endpoints", [[1], [{"ifname": "eth0"}], [{"network": "a", "aliases": "x"}], "a"])
def test_a_record_with_damaged_endpoints_is_refused(tmp_path: Path, endpoints: object) -> None:
    root = Root(str(tmp_path))
    ctr = _two_networks(root)
    state.save(root, ctr)
    data = json.loads(Path(state.path(root, ctr.id)).read_text())
    data["endpoints"] = endpoints
    Path(state.path(root, ctr.id)).write_text(json.dumps(data))
    with pytest.raises(state.ContainerError, match="corrupt record"):
        state.load(root, ctr.id)
