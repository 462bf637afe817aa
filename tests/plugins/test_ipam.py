"""netkit-ipam, the host-local drop-in: in-process through the handler and as the real executable."""

from __future__ import annotations

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from netkit import errors
from netkit.launch import invoker

PLUGIN = "netkit-ipam"
NET = "ipamnet"


@pytest.fixture(autouse=True)
def _boot(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed boot id for in-process calls (current_boot_id reads os.environ)."""
    monkeypatch.setenv("NETKIT_BOOT_ID", "boot-test")


def _conf(tmp_path: Path, cni_version: str = "1.0.0", ranges: Any = None, **ipam: Any) -> dict[str, Any]:
    section: dict[str, Any] = {"type": PLUGIN, "dataDir": str(tmp_path / "leases"),
                               "routes": [{"dst": "0.0.0.0/0"}]}
    if ranges is not None or "subnet" not in ipam:
        section["ranges"] = ranges if ranges is not None else [[{"subnet": "10.10.0.0/24"}]]
    section.update(ipam)
    return {"cniVersion": cni_version, "name": NET, "type": "netkit-bridge", "ipam": section}


def _env(command: str, cid: str = "c1", ifname: str = "eth0", args: str = "") -> dict[str, str]:
    env = {"CNI_COMMAND": command}
    if command in ("ADD", "DEL", "CHECK"):
        env.update(CNI_CONTAINERID=cid, CNI_IFNAME=ifname, CNI_NETNS=f"/run/netns/{cid}")
    if args:
        env["CNI_ARGS"] = args
    return env


def _call(command: str, conf: dict[str, Any], cid: str = "c1", ifname: str = "eth0",
          args: str = "") -> tuple[int, Any]:
    out, code = invoker.handle(PLUGIN, _env(command, cid, ifname, args), json.dumps(conf).encode())
    assert b"Traceback" not in out
    body = json.loads(out) if out.strip() else None
    if code != 0:
        assert {"cniVersion", "code", "msg"} <= set(body), body
    else:
        assert command == "ADD" or body is None
    return code, body


def _add(conf: dict[str, Any], cid: str = "c1", **kw: Any) -> list[str]:
    code, body = _call("ADD", conf, cid, **kw)
    assert code == 0, body
    return [ip["address"] for ip in body["ips"]]


def _fail(command: str, conf: dict[str, Any], expected: int, cid: str = "c1", **kw: Any) -> dict[str, Any]:
    code, body = _call(command, conf, cid, **kw)
    assert code == 1
    assert body["code"] == expected, body
    return body


def _leases(tmp_path: Path, net: str = NET) -> list[str]:
    d = tmp_path / "leases" / net
    if not d.is_dir():
        return []
    return sorted(n for n in os.listdir(d) if n[0].isdigit() or ":" in n)


def _lease(tmp_path: Path, addr: str) -> dict[str, Any]:
    return json.loads((tmp_path / "leases" / NET / addr).read_text())


# ADD ---------------------------------------------------------------------------------------------

def test_add_returns_address_gateway_routes_and_writes_lease(tmp_path: Path) -> None:
    code, body = _call("ADD", _conf(tmp_path))
    assert code == 0
    assert body == {"cniVersion": "1.0.0", "ips": [{"address": "10.10.0.2/24", "gateway": "10.10.0.1"}],
                    "routes": [{"dst": "0.0.0.0/0"}]}
    assert _leases(tmp_path) == ["10.10.0.2"]
    assert _lease(tmp_path, "10.10.0.2") == {"containerID": "c1", "ifname": "eth0", "bootID": "boot-test"}


@pytest.mark.parametrize("cni_version", ["0.3.0", "0.3.1", "0.4.0"])
def test_add_in_old_versions_carries_ip_version(tmp_path: Path, cni_version: str) -> None:
    code, body = _call("ADD", _conf(tmp_path, cni_version, ranges=[[{"subnet": "10.10.0.0/24"}],
                                                                    [{"subnet": "fd10::/64"}]]))
    assert code == 0
    assert body["cniVersion"] == cni_version
    assert [(ip["address"], ip["version"]) for ip in body["ips"]] == [("10.10.0.2/24", "4"), ("fd10::2/64", "6")]


def test_round_robin_does_not_reuse_the_freed_address_at_once(tmp_path: Path) -> None:
    conf = _conf(tmp_path)
    assert _add(conf, "c1") == ["10.10.0.2/24"]
    assert _add(conf, "c2") == ["10.10.0.3/24"]
    assert _call("DEL", conf, "c2") == (0, None)
    assert _add(conf, "c3") == ["10.10.0.4/24"]
    assert _leases(tmp_path) == ["10.10.0.2", "10.10.0.4"]


def test_gateway_is_skipped(tmp_path: Path) -> None:
    conf = _conf(tmp_path, ranges=[[{"subnet": "10.10.0.0/24", "rangeStart": "10.10.0.10", "rangeEnd": "10.10.0.12",
                                     "gateway": "10.10.0.11"}]])
    code, body = _call("ADD", conf, "c1")
    assert body["ips"] == [{"address": "10.10.0.10/24", "gateway": "10.10.0.11"}]
    assert _add(conf, "c2") == ["10.10.0.12/24"]


def test_range_start_and_end_are_honoured(tmp_path: Path) -> None:
    conf = _conf(tmp_path, ranges=[[{"subnet": "10.10.0.0/24", "rangeStart": "10.10.0.100",
                                     "rangeEnd": "10.10.0.101"}]])
    assert _add(conf, "c1") == ["10.10.0.100/24"]
    assert _add(conf, "c2") == ["10.10.0.101/24"]
    _fail("ADD", conf, errors.POOL_EXHAUSTED, "c3")
    assert _leases(tmp_path) == ["10.10.0.100", "10.10.0.101"]


def test_dual_stack_gets_one_address_per_range_set(tmp_path: Path) -> None:
    conf = _conf(tmp_path, ranges=[[{"subnet": "10.10.0.0/24"}, {"subnet": "10.11.0.0/24"}],
                                   [{"subnet": "fd10::/64", "gateway": "fd10::ffff"}]])
    code, body = _call("ADD", conf)
    assert body["ips"] == [{"address": "10.10.0.2/24", "gateway": "10.10.0.1"},
                           {"address": "fd10::1/64", "gateway": "fd10::ffff"}]
    assert _leases(tmp_path) == ["10.10.0.2", "fd10::1"]


def test_exhausted_pool_is_103_and_partial_dual_stack_add_leaves_no_lease(tmp_path: Path) -> None:
    conf = _conf(tmp_path, ranges=[[{"subnet": "fd10::/64"}], [{"subnet": "10.10.0.0/30"}]])
    assert _add(conf, "c1") == ["fd10::2/64", "10.10.0.2/30"]
    _fail("ADD", conf, errors.POOL_EXHAUSTED, "c2")
    assert _leases(tmp_path) == ["10.10.0.2", "fd10::2"]
    assert {_lease(tmp_path, a)["containerID"] for a in _leases(tmp_path)} == {"c1"}


def test_requested_ip_via_cni_args(tmp_path: Path) -> None:
    conf = _conf(tmp_path, ranges=[[{"subnet": "10.10.0.0/24"}], [{"subnet": "fd10::/64"}]])
    assert _add(conf, args="IgnoreUnknown=1;IP=10.10.0.50,fd10::50") == ["10.10.0.50/24", "fd10::50/64"]


def test_requested_ip_via_runtime_config(tmp_path: Path) -> None:
    conf = _conf(tmp_path)
    conf["runtimeConfig"] = {"ips": ["10.10.0.60/24"]}
    assert _add(conf) == ["10.10.0.60/24"]


def test_requested_ip_via_args_cni_ips(tmp_path: Path) -> None:
    conf = _conf(tmp_path)
    conf["args"] = {"cni": {"ips": ["10.10.0.70"]}}
    assert _add(conf) == ["10.10.0.70/24"]


def test_requested_ip_taken_by_another_container_is_104(tmp_path: Path) -> None:
    conf = _conf(tmp_path)
    assert _add(conf, "c1", args="IP=10.10.0.50") == ["10.10.0.50/24"]
    _fail("ADD", conf, errors.ADDRESS_UNAVAILABLE, "c2", args="IP=10.10.0.50")
    assert _leases(tmp_path) == ["10.10.0.50"]
    assert _lease(tmp_path, "10.10.0.50")["containerID"] == "c1"


@pytest.mark.parametrize("ip", ["10.99.0.5", "10.10.0.0", "10.10.0.255", "fd10::5"])
def test_requested_ip_outside_ranges_is_104(tmp_path: Path, ip: str) -> None:
    _fail("ADD", _conf(tmp_path), errors.ADDRESS_UNAVAILABLE, args=f"IP={ip}")
    assert _leases(tmp_path) == []


def test_requested_gateway_is_104(tmp_path: Path) -> None:
    # The reference host-local refuses "requested ip ... is subnet's gateway".
    _fail("ADD", _conf(tmp_path), errors.ADDRESS_UNAVAILABLE, args="IP=10.10.0.1")
    assert _leases(tmp_path) == []


def test_invalid_requested_ip_is_code_7(tmp_path: Path) -> None:
    _fail("ADD", _conf(tmp_path), errors.INVALID_CONFIG, args="IP=not-an-ip")


def test_repeated_add_returns_same_address_without_second_lease(tmp_path: Path) -> None:
    conf = _conf(tmp_path)
    first = _add(conf, "c1")
    _add(conf, "c2")
    assert _add(conf, "c1") == first
    assert _leases(tmp_path) == ["10.10.0.2", "10.10.0.3"]


# DEL ---------------------------------------------------------------------------------------------

def test_del_releases_and_is_idempotent(tmp_path: Path) -> None:
    conf = _conf(tmp_path)
    _add(conf, "c1")
    _add(conf, "c2")
    assert _call("DEL", conf, "c1") == (0, None)
    assert _leases(tmp_path) == ["10.10.0.3"]
    assert _call("DEL", conf, "c1") == (0, None)
    assert _leases(tmp_path) == ["10.10.0.3"]


def test_del_only_releases_the_named_interface(tmp_path: Path) -> None:
    conf = _conf(tmp_path)
    _add(conf, "c1", ifname="eth0")
    _add(conf, "c1", ifname="net1")
    assert _call("DEL", conf, "c1", ifname="net1") == (0, None)
    assert _leases(tmp_path) == ["10.10.0.2"]


def test_del_of_unknown_container_succeeds(tmp_path: Path) -> None:
    assert _call("DEL", _conf(tmp_path), "never-added") == (0, None)


# CHECK -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cni_version", ["0.4.0", "1.0.0"])
def test_check_passes_after_add_and_fails_after_lease_lost(tmp_path: Path, cni_version: str) -> None:
    conf = _conf(tmp_path, cni_version)
    code, result = _call("ADD", conf)
    assert code == 0
    conf["prevResult"] = result
    assert _call("CHECK", conf) == (0, None)
    (tmp_path / "leases" / NET / "10.10.0.2").unlink()
    _fail("CHECK", conf, errors.CHECK_FAILED)


def test_check_fails_for_an_attachment_never_added(tmp_path: Path) -> None:
    conf = _conf(tmp_path)
    _add(conf, "c1")
    _fail("CHECK", conf, errors.CHECK_FAILED, "c2")


def test_check_fails_when_prev_result_names_an_address_not_leased(tmp_path: Path) -> None:
    conf = _conf(tmp_path)
    _add(conf, "c1")
    conf["prevResult"] = {"cniVersion": "1.0.0", "ips": [{"address": "10.10.0.9/24"}]}
    _fail("CHECK", conf, errors.CHECK_FAILED)


# GC and STATUS -----------------------------------------------------------------------------------

def test_gc_releases_every_lease_not_in_valid_attachments(tmp_path: Path) -> None:
    conf = _conf(tmp_path, "1.1.0")
    for cid in ("keep", "drop1", "drop2"):
        _add(conf, cid)
    _add(conf, "keep", ifname="net1")
    conf["cni.dev/valid-attachments"] = [{"containerID": "keep", "ifname": "eth0"}]
    assert _call("GC", conf) == (0, None)
    assert _leases(tmp_path) == ["10.10.0.2"]
    assert _lease(tmp_path, "10.10.0.2")["containerID"] == "keep"
    assert (tmp_path / "leases" / NET / "lock").exists()


def test_gc_with_malformed_valid_attachments_is_code_7(tmp_path: Path) -> None:
    conf = _conf(tmp_path, "1.1.0")
    _add(conf)
    conf["cni.dev/valid-attachments"] = ["c1"]
    _fail("GC", conf, errors.INVALID_CONFIG)
    assert _leases(tmp_path) == ["10.10.0.2"]


def test_status_ready_then_not_available_when_exhausted(tmp_path: Path) -> None:
    conf = _conf(tmp_path, "1.1.0", ranges=[[{"subnet": "10.10.0.0/24", "rangeStart": "10.10.0.10",
                                              "rangeEnd": "10.10.0.11"}]])
    assert _call("STATUS", conf) == (0, None)
    _add(conf, "c1")
    assert _call("STATUS", conf) == (0, None)
    _add(conf, "c2")
    body = _fail("STATUS", conf, errors.NOT_AVAILABLE)
    assert body["cniVersion"] == "1.1.0"


def test_status_with_unusable_data_dir_is_not_available(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    conf = _conf(tmp_path, "1.1.0", dataDir=str(tmp_path / "afile" / "leases"))
    _fail("STATUS", conf, errors.NOT_AVAILABLE)


# Lease files of others and of the past -----------------------------------------------------------

def test_reference_lease_file_is_respected_and_released_by_del(tmp_path: Path) -> None:
    d = tmp_path / "leases" / NET
    d.mkdir(parents=True)
    (d / "10.10.0.2").write_bytes(b"containerid\r\neth0")
    conf = _conf(tmp_path)
    assert _add(conf, "c1") == ["10.10.0.3/24"]
    assert _call("DEL", conf, "containerid") == (0, None)
    assert _leases(tmp_path) == ["10.10.0.3"]


def test_corrupt_lease_file_neither_crashes_add_nor_is_handed_out(tmp_path: Path) -> None:
    d = tmp_path / "leases" / NET
    d.mkdir(parents=True)
    (d / "10.10.0.2").write_bytes(b"\xff\x00{garbage")
    (d / "10.10.0.3").write_bytes(b"")
    (d / "10.10.0.4").mkdir()
    conf = _conf(tmp_path)
    assert _add(conf, "c1") == ["10.10.0.5/24"]
    assert _call("DEL", conf, "c1") == (0, None)
    assert _leases(tmp_path) == ["10.10.0.2", "10.10.0.3", "10.10.0.4"]


def test_reboot_reclaims_leases_of_the_previous_boot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = _conf(tmp_path, ranges=[[{"subnet": "10.10.0.0/24", "rangeStart": "10.10.0.10",
                                     "rangeEnd": "10.10.0.11"}]])
    monkeypatch.setenv("NETKIT_BOOT_ID", "boot-a")
    _add(conf, "old1")
    _add(conf, "old2")
    (tmp_path / "leases" / NET / "10.10.0.99").write_bytes(b"refcontainer\r\neth0")  # reference: kept
    _fail("ADD", conf, errors.POOL_EXHAUSTED, "new0")
    monkeypatch.setenv("NETKIT_BOOT_ID", "boot-b")
    assert _add(conf, "new1") in (["10.10.0.10/24"], ["10.10.0.11/24"])
    assert _add(conf, "new2") in (["10.10.0.10/24"], ["10.10.0.11/24"])
    owners = {a: _lease(tmp_path, a) for a in ("10.10.0.10", "10.10.0.11")}
    assert {o["containerID"] for o in owners.values()} == {"new1", "new2"}
    assert {o["bootID"] for o in owners.values()} == {"boot-b"}
    assert "10.10.0.99" in _leases(tmp_path)


# Config ------------------------------------------------------------------------------------------

def test_resolv_conf_becomes_dns(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("# comment\n; other comment\nnameserver 10.0.0.53\nnameserver fd00::53\n"
                      "domain example.test\nsearch a.test b.test\noptions ndots:2 edns0\noptions rotate\n\n")
    code, body = _call("ADD", _conf(tmp_path, resolvConf=str(resolv)))
    assert code == 0
    assert body["dns"] == {"nameservers": ["10.0.0.53", "fd00::53"], "domain": "example.test",
                           "search": ["a.test", "b.test"], "options": ["ndots:2", "edns0", "rotate"]}


def test_missing_resolv_conf_is_code_5_and_leaves_no_lease(tmp_path: Path) -> None:
    _fail("ADD", _conf(tmp_path, resolvConf=str(tmp_path / "nope")), errors.IO_FAILURE)
    assert _leases(tmp_path) == []


def test_old_single_range_form(tmp_path: Path) -> None:
    conf = _conf(tmp_path, subnet="10.12.0.0/16", rangeStart="10.12.1.20", rangeEnd="10.12.1.21",
                 gateway="10.12.0.254")
    assert "ranges" not in conf["ipam"]
    code, body = _call("ADD", conf)
    assert body["ips"] == [{"address": "10.12.1.20/16", "gateway": "10.12.0.254"}]


def test_unwritable_data_dir_is_code_5(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    _fail("ADD", _conf(tmp_path, dataDir=str(tmp_path / "afile" / "leases")), errors.IO_FAILURE)


@pytest.mark.parametrize("name", ["a/b", "..", "."])
def test_network_name_that_would_escape_data_dir_is_code_7(tmp_path: Path, name: str) -> None:
    conf = _conf(tmp_path)
    conf["name"] = name
    _fail("ADD", conf, errors.INVALID_CONFIG)
    assert not (tmp_path / "lock").exists() and not (tmp_path / "leases" / "lock").exists()


def test_networks_are_separate(tmp_path: Path) -> None:
    conf = _conf(tmp_path)
    other = dict(conf, name="othernet")
    assert _add(conf, "c1") == ["10.10.0.2/24"]
    assert _add(other, "c1") == ["10.10.0.2/24"]
    assert _leases(tmp_path, "othernet") == ["10.10.0.2"]


# The real executable -----------------------------------------------------------------------------

def _exec(plugin_bin: str, env: dict[str, str], conf: dict[str, Any]) -> tuple[int, Any]:
    proc = subprocess.run([os.path.join(plugin_bin, PLUGIN)], input=json.dumps(conf).encode(),
                          env={**env, "NETKIT_AGENT": "off"},
                          capture_output=True, timeout=60)
    assert b"Traceback" not in proc.stderr, proc.stderr.decode()
    return proc.returncode, (json.loads(proc.stdout) if proc.stdout.strip() else None)


def test_executable_add_check_del(plugin_bin: str, tmp_path: Path) -> None:
    conf = _conf(tmp_path)
    code, result = _exec(plugin_bin, _env("ADD", "x1"), conf)
    assert code == 0, result
    assert result["ips"][0]["address"] == "10.10.0.2/24"
    assert _lease(tmp_path, "10.10.0.2")["bootID"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    conf["prevResult"] = result
    assert _exec(plugin_bin, _env("CHECK", "x1"), conf) == (0, None)
    assert _exec(plugin_bin, _env("DEL", "x1"), conf) == (0, None)
    assert _leases(tmp_path) == []
    code, err = _exec(plugin_bin, _env("CHECK", "x1"), conf)
    assert (code, err["code"]) == (1, errors.CHECK_FAILED)


def test_executable_error_is_json_on_stdout(plugin_bin: str, tmp_path: Path) -> None:
    code, err = _exec(plugin_bin, _env("ADD", "x1"), _conf(tmp_path, ranges=[[{"subnet": "10.10.0.0/24",
                                                                              "rangeStart": "10.11.0.1"}]]))
    assert code == 1
    assert err["code"] == errors.INVALID_CONFIG and err["cniVersion"] == "1.0.0"


def test_sixteen_parallel_adds_get_distinct_addresses(plugin_bin: str, tmp_path: Path) -> None:
    conf = _conf(tmp_path)

    def one(i: int) -> tuple[int, Any]:
        return _exec(plugin_bin, _env("ADD", f"par{i}"), conf)

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(one, range(16)))
    assert all(code == 0 for code, _ in outcomes), outcomes
    addrs = [body["ips"][0]["address"] for _, body in outcomes]
    assert len(set(addrs)) == 16
    assert len(_leases(tmp_path)) == 16
    owners = {_lease(tmp_path, a.split("/")[0])["containerID"] for a in addrs}
    assert owners == {f"par{i}" for i in range(16)}
    assert not [n for n in os.listdir(tmp_path / "leases" / NET) if ".tmp." in n]


def test_executable_reboot_reclaim_via_boot_id_env(plugin_bin: str, tmp_path: Path) -> None:
    conf = _conf(tmp_path, ranges=[[{"subnet": "10.10.0.0/24", "rangeStart": "10.10.0.10",
                                     "rangeEnd": "10.10.0.10"}]])
    code, _ = _exec(plugin_bin, dict(_env("ADD", "old"), NETKIT_BOOT_ID="boot-a"), conf)
    assert code == 0
    code, err = _exec(plugin_bin, dict(_env("ADD", "new"), NETKIT_BOOT_ID="boot-a"), conf)
    assert (code, err["code"]) == (1, errors.POOL_EXHAUSTED)
    code, res = _exec(plugin_bin, dict(_env("ADD", "new"), NETKIT_BOOT_ID="boot-b"), conf)
    assert code == 0 and res["ips"][0]["address"] == "10.10.0.10/24"
    assert _lease(tmp_path, "10.10.0.10") == {"containerID": "new", "ifname": "eth0", "bootID": "boot-b"}


def test_shares_a_data_dir_with_reference_host_local(plugin_bin: str, reference_plugins: str, tmp_path: Path) -> None:
    # reference_plugins fails the test loudly when host-local is missing: setup.sh installs it.
    conf = _conf(tmp_path)
    conf["ipam"]["type"] = "host-local"
    env = dict(_env("ADD", "ref1"), CNI_PATH=reference_plugins)
    proc = subprocess.run([os.path.join(reference_plugins, "host-local")], input=json.dumps(conf).encode(), env=env,
                          capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ref_addr = json.loads(proc.stdout)["ips"][0]["address"]
    code, ours = _exec(plugin_bin, _env("ADD", "ours1"), conf)
    assert code == 0
    assert ours["ips"][0]["address"] != ref_addr
    assert _exec(plugin_bin, _env("DEL", "ref1"), conf) == (0, None)
    assert ref_addr.split("/")[0] not in _leases(tmp_path)
    assert len(_leases(tmp_path)) == 1
