"""`netkit cni install`: launchers, the default conflist, and the subnet choice."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys

from netkit.launch import install, native
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
        assert native.read_binary(exe) is not None                  # the default install: a C launcher
        with open(native.fallback_path(exe)) as f:                      # and the Python launcher it execs
            assert f.readline() == f"#!{sys.executable} -IS\n"
        about = subprocess.run([exe], capture_output=True, text=True, env={})
        assert about.returncode == 0 and name in about.stderr and "1.1.0" in about.stderr
        ver = subprocess.run([exe], input='{"cniVersion":"1.0.0"}', capture_output=True, text=True,
                             env={"CNI_COMMAND": "VERSION", "NETKIT_AGENT": "off"})
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
    assert os.listdir(f"{tmp}/cache/results") == [] and c.links() == ["lo"]


def test_cni_cli_speaks_cnitools_environment(box: Sandbox, tmp_path: os.PathLike[str]) -> None:
    # NETCONFPATH, CNI_PATH, CNI_IFNAME, CAP_ARGS as cnitool reads them; the result is cached in
    # libcni's layout; gc keeps what the cache holds; status asks every plugin.
    tmp = str(tmp_path)
    os.makedirs(f"{tmp}/conf")
    conf = {"cniVersion": "1.1.0", "name": "envnet", "plugins": [
        {"type": "netkit-bridge", "bridge": "nkbr9", "isGateway": True, "capabilities": {"portMappings": True},
         "ipam": {"type": "netkit-ipam", "ranges": [[{"subnet": "10.44.0.0/24"}]], "dataDir": f"{tmp}/leases"}}]}
    with open(f"{tmp}/conf/10-envnet.conflist", "w") as f:
        json.dump(conf, f)
    c = box.container()
    env = dict(os.environ, NETCONFPATH=f"{tmp}/conf", CNI_PATH=box.bin_dir, CNI_IFNAME="net1",
               CAP_ARGS=json.dumps({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}))
    cli = [sys.executable, "-m", "netkit", "cni"]
    add = box.host.run(*cli, "add", "envnet", c.path, "--cache-dir", f"{tmp}/cache", env=env)
    assert add.returncode == 0, add.stderr
    assert json.loads(add.stdout)["interfaces"][2]["name"] == "net1"
    cached = os.listdir(f"{tmp}/cache/results")
    assert len(cached) == 1 and cached[0].startswith("envnet-cnitool-") and cached[0].endswith("-net1")
    with open(f"{tmp}/cache/results/{cached[0]}") as f:
        assert json.load(f)["kind"] == "cniCacheV1"
    assert "tcp/*/8080" in box.host.run("nft", "list", "table", "inet", "netkit").stdout
    assert box.host.run(*cli, "status", "envnet", env=env).stdout.strip() == "ready"
    gc = box.host.run(*cli, "gc", "envnet", "--cache-dir", f"{tmp}/cache", env=env)
    assert gc.returncode == 0, gc.stderr
    assert len(os.listdir(f"{tmp}/leases/envnet")) > 2  # the cached attachment kept its lease
    assert box.host.run(*cli, "del", "envnet", c.path, "--cache-dir", f"{tmp}/cache", env=env).returncode == 0
    assert "tcp/*/8080" not in box.host.run("nft", "list", "table", "inet", "netkit").stdout


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


def test_install_agent_writes_a_unit_running_this_interpreter(tmp_path: os.PathLike[str]) -> None:
    tmp = str(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "netkit", "cni", "install", "--bin-dir", f"{tmp}/bin",
                           "--conf-dir", f"{tmp}/conf", "--agent", "--unit-dir", f"{tmp}/units"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with open(f"{tmp}/units/netkit-agent.service") as f:
        unit = f.read()
    assert f"ExecStart={sys.executable} -m netkit agent --socket /run/netkit/agent.sock" in unit
    assert "[Install]" in unit and "systemctl" in proc.stdout


def test_plugins_current_notices_a_launcher_of_another_install(tmp_path: os.PathLike[str]) -> None:
    """The runtime rewrites its launchers when they are not what this installation writes: missing,
    edited, or from a netkit whose launchers imported another module (netkit.cni.launcher, before
    netkit.launch)."""
    bin_dir = os.path.join(str(tmp_path), "bin")
    assert not install.plugins_current(bin_dir)
    install.install_plugins(bin_dir)
    assert install.plugins_current(bin_dir)
    exe = native.fallback_path(os.path.join(bin_dir, "netkit-ipam"))  # the Python launcher a C one execs
    with open(exe, encoding="utf-8") as f:
        text = f.read()
    with open(exe, "w", encoding="utf-8") as f:
        f.write(text.replace("from netkit.launch.executable import main", "from netkit.cni.launcher import main"))
    assert not install.plugins_current(bin_dir)
    install.install_plugins(bin_dir)
    os.unlink(os.path.join(bin_dir, "netkit-ipam"))
    assert not install.plugins_current(bin_dir)


def test_a_launcher_written_before_netkit_launch_still_answers(tmp_path: os.PathLike[str]) -> None:
    """A launcher left by an older netkit (it imports netkit.cni.launcher) answers as a new one does
    until `netkit cni install` rewrites it, not with a traceback."""
    bin_dir = os.path.join(str(tmp_path), "bin")
    install.install_plugins(bin_dir)
    exe = os.path.join(bin_dir, "netkit-ipam")
    text_exe = native.fallback_path(exe)  # the Python launcher behind the C one
    with open(text_exe, encoding="utf-8") as f:
        text = f.read()
    with open(text_exe, "w", encoding="utf-8") as f:
        f.write(text.replace("from netkit.launch.executable import main", "from netkit.cni.launcher import main"))
    with open(text_exe, encoding="utf-8") as f:
        assert "from netkit.cni.launcher import main" in f.read()
    env = {"CNI_COMMAND": "VERSION", "PATH": os.environ.get("PATH", ""), "NETKIT_AGENT": "off"}
    proc = subprocess.run([exe], input=b'{"cniVersion": "0.4.0"}', env=env, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["cniVersion"] == "0.4.0"
