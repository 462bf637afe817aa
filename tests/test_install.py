"""`netkit cni install`: launchers, the default conflist, and the subnet choice."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys

from netkit import install
from netkit.cni.version import SUPPORTED
from tests.sandbox import Sandbox


def _install_in(box: Sandbox, tmp: str) -> subprocess.CompletedProcess[str]:
    return box.host.run(sys.executable, "-m", "netkit", "cni", "install", "--bin-dir", f"{tmp}/bin",
                        "--conf-dir", f"{tmp}/conf")


def test_install_writes_launchers_that_run_this_interpreter(box: Sandbox, tmp_path: os.PathLike[str]) -> None:
    tmp = str(tmp_path)
    proc = _install_in(box, tmp)
    assert proc.returncode == 0, proc.stderr
    for name in ("netkit-bridge", "netkit-ipam", "netkit-loopback"):
        exe = os.path.join(tmp, "bin", name)
        assert os.access(exe, os.X_OK)
        with open(exe) as f:
            assert f.readline() == f"#!{sys.executable} -IS\n"
        about = subprocess.run([exe], capture_output=True, text=True, env={})
        assert about.returncode == 0 and name in about.stderr and "1.1.0" in about.stderr
        ver = subprocess.run([exe], input='{"cniVersion":"1.0.0"}', capture_output=True, text=True,
                             env={"CNI_COMMAND": "VERSION"})
        assert json.loads(ver.stdout)["supportedVersions"] == list(SUPPORTED)


def test_default_conflist_is_dockers_docker0_layout(box: Sandbox, tmp_path: os.PathLike[str]) -> None:
    tmp = str(tmp_path)
    assert _install_in(box, tmp).returncode == 0
    with open(os.path.join(tmp, "conf", "netkit.conflist")) as f:
        conf = json.load(f)
    bridge = conf["plugins"][0]
    assert (conf["name"], bridge["type"], bridge["bridge"]) == ("netkit", "netkit-bridge", "netkit0")
    assert bridge["ipam"]["ranges"] == [[{"subnet": "172.17.0.0/16", "gateway": "172.17.0.1"}]]


def test_overlapping_route_moves_the_default_subnet_and_says_so(box: Sandbox, tmp_path: os.PathLike[str]) -> None:
    box.host.run("ip", "link", "add", "dock0", "type", "veth", "peer", "name", "dock1", check=True)
    box.host.run("ip", "addr", "add", "172.17.0.1/16", "dev", "dock0", check=True)
    box.host.run("ip", "link", "set", "dock0", "up", check=True)
    box.host.run("ip", "route", "add", "172.18.5.0/24", "dev", "dock0", check=True)
    proc = _install_in(box, str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "overlaps a route" in proc.stdout and "172.19.0.0/16" in proc.stdout


def test_choose_subnet_skips_overlaps_in_order() -> None:
    routes = [ipaddress.ip_network("172.16.0.0/12")]
    try:
        install.choose_subnet(routes)
    except ValueError as exc:
        assert "overlaps" in str(exc)
    else:
        raise AssertionError("a /12 over the whole pool must leave no subnet")
    assert install.choose_subnet([ipaddress.ip_network("10.0.0.0/8")]) == ipaddress.ip_network("172.17.0.0/16")


def test_existing_conflist_is_kept(box: Sandbox, tmp_path: os.PathLike[str]) -> None:
    tmp = str(tmp_path)
    os.makedirs(f"{tmp}/conf")
    with open(f"{tmp}/conf/netkit.conflist", "w") as f:
        f.write('{"edited": true}')
    proc = _install_in(box, tmp)
    assert "kept existing" in proc.stdout
    with open(f"{tmp}/conf/netkit.conflist") as f:
        assert json.load(f) == {"edited": True}


def test_cli_attaches_a_namespace_to_the_default_network(box: Sandbox, tmp_path: os.PathLike[str]) -> None:
    tmp = str(tmp_path)
    assert _install_in(box, tmp).returncode == 0
    with open(f"{tmp}/conf/netkit.conflist") as f:
        conf = json.load(f)
    conf["plugins"][0]["ipam"]["dataDir"] = f"{tmp}/leases"
    with open(f"{tmp}/conf/netkit.conflist", "w") as f:
        json.dump(conf, f)
    c = box.container()
    common = ["--conf-dir", f"{tmp}/conf", "--path", f"{tmp}/bin", "--cache-dir", f"{tmp}/cache"]
    add = box.host.run(sys.executable, "-m", "netkit", "cni", "add", "netkit", c.path, *common)
    assert add.returncode == 0, add.stderr
    assert json.loads(add.stdout)["ips"][0]["address"] == "172.17.0.2/16"
    assert c.ping("172.17.0.1")
    check = box.host.run(sys.executable, "-m", "netkit", "cni", "check", "netkit", c.path, *common)
    assert check.returncode == 0, check.stderr
    dele = box.host.run(sys.executable, "-m", "netkit", "cni", "del", "netkit", c.path, *common)
    assert dele.returncode == 0, dele.stderr
    assert os.listdir(f"{tmp}/cache") == [] and c.links() == ["lo"]


def test_cli_error_is_one_line_without_traceback(box: Sandbox, tmp_path: os.PathLike[str]) -> None:
    c = box.container()
    proc = box.host.run(sys.executable, "-m", "netkit", "cni", "add", "nosuchnet", c.path,
                        "--conf-dir", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "no network named 'nosuchnet'" in proc.stderr


def test_example_conflist_is_what_install_writes() -> None:
    example = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cni", "netkit.conflist")
    with open(example) as f:
        assert json.load(f) == install.default_conflist(ipaddress.ip_network("172.17.0.0/16"))
