"""Delegation to another plugin: lookup in CNI_PATH, exec through an executor, passing its answer through."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.agent import NO_AGENT_ENV
from netkit import errors
from netkit.cni import delegate, request
from netkit.cni import executor as executors
from tests.cni.fake_exec import FakeExec, result_of


def _script(directory: Path, name: str, body: str) -> str:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def _env(command: str = "ADD") -> dict[str, str]:
    # NETKIT_AGENT=off: a real netkit launcher exec'd here answers in-process and starts no agent.
    return {"CNI_COMMAND": command, "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0",
            **NO_AGENT_ENV}


def _ipam_conf(tmp_path: Path, cni_version: str = "1.0.0", **ipam: Any) -> dict[str, Any]:
    section: dict[str, Any] = {"type": "netkit-ipam", "ranges": [[{"subnet": "10.7.0.0/24"}]],
                               "dataDir": str(tmp_path / "leases")}
    section.update(ipam)
    return {"cniVersion": cni_version, "name": "net", "type": "netkit-bridge", "ipam": section}


@pytest.mark.parametrize("plugin_type", ["../netkit-ipam", "/usr/bin/true", "a/b", "", ".", ".."])
def test_find_refuses_types_with_slash_or_dots(plugin_bin: str, plugin_type: str) -> None:
    with pytest.raises(errors.CNIError) as info:
        executors.find(plugin_type, [plugin_bin])
    assert info.value.code == errors.INVALID_CONFIG


def test_find_missing_plugin_is_code_105(plugin_bin: str, tmp_path: Path) -> None:
    with pytest.raises(errors.CNIError) as info:
        executors.find("host-nowhere", [plugin_bin, str(tmp_path)])
    assert info.value.code == errors.DELEGATE_FAILED


def test_find_skips_non_executable_and_directories(tmp_path: Path) -> None:
    first, second, third = (tmp_path / d for d in ("a", "b", "c"))
    for d in (first, second, third):
        d.mkdir()
    (first / "plug").write_text("#!/bin/sh\n")  # not executable
    (second / "plug").mkdir()  # a directory
    exe = _script(third, "plug", "exit 0\n")
    assert executors.find("plug", [str(first), str(second), str(third)]) == exe


def test_find_takes_first_match_in_path_order(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    exe_a = _script(tmp_path / "a", "plug", "exit 0\n")
    _script(tmp_path / "b", "plug", "exit 0\n")
    assert executors.find("plug", [str(tmp_path / "b"), str(tmp_path / "a")]) != exe_a
    assert executors.find("plug", [str(tmp_path / "a"), str(tmp_path / "b")]) == exe_a


def test_delegate_error_code_is_passed_through(tmp_path: Path) -> None:
    _script(tmp_path, "failer", "cat >/dev/null\n"
            "echo '{\"cniVersion\": \"1.0.0\", \"code\": 42, \"msg\": \"boom\", \"details\": \"why\"}'\nexit 1\n")
    with pytest.raises(errors.CNIError) as info:
        delegate.invoke("failer", "ADD", _env(), b"{}", [str(tmp_path)])
    assert (info.value.code, info.value.msg, info.value.details) == (42, "boom", "why")


def test_delegate_failure_without_json_is_code_105(tmp_path: Path) -> None:
    _script(tmp_path, "crasher", "echo 'segfault or so' >&2\nexit 3\n")
    with pytest.raises(errors.CNIError) as info:
        delegate.invoke("crasher", "ADD", _env(), b"{}", [str(tmp_path)])
    assert info.value.code == errors.DELEGATE_FAILED
    assert "segfault" in info.value.details


def test_delegate_invalid_json_on_success_is_code_105(tmp_path: Path) -> None:
    _script(tmp_path, "liar", "echo 'not json'\nexit 0\n")
    with pytest.raises(errors.CNIError) as info:
        delegate.invoke("liar", "ADD", _env(), b"{}", [str(tmp_path)])
    assert info.value.code == errors.DELEGATE_FAILED


def test_delegate_gets_command_env_and_stdin(tmp_path: Path) -> None:
    out = tmp_path / "seen"
    _script(tmp_path, "spy", f'echo "$CNI_COMMAND $CNI_IFNAME" > {out}\ncat >> {out}\n')
    assert delegate.invoke("spy", "DEL", _env("ADD"), b'{"x": 1}', [str(tmp_path)]) is None
    assert out.read_text() == 'DEL eth0\n{"x": 1}'


def test_delegate_add_result_is_normalized(plugin_bin: str, tmp_path: Path) -> None:
    conf = _ipam_conf(tmp_path, "0.3.1")
    res = delegate.invoke("netkit-ipam", "ADD", _env(), json.dumps(conf).encode(), [plugin_bin])
    assert res is not None
    assert res["ips"] == [{"address": "10.7.0.2/24", "gateway": "10.7.0.1"}]
    assert "cniVersion" not in res


def test_real_netkit_ipam_error_passes_through(plugin_bin: str, tmp_path: Path) -> None:
    conf = _ipam_conf(tmp_path, ranges=[[{"subnet": "10.7.0.0/24", "rangeStart": "10.8.0.1"}]])
    with pytest.raises(errors.CNIError) as info:
        delegate.invoke("netkit-ipam", "ADD", _env(), json.dumps(conf).encode(), [plugin_bin])
    assert info.value.code == errors.INVALID_CONFIG


def test_call_uses_the_request_env_path_and_stdin(tmp_path: Path) -> None:
    _script(tmp_path, "ipam-fails", "cat >/dev/null\n"
            "echo '{\"cniVersion\": \"1.0.0\", \"code\": 103, \"msg\": \"pool exhausted\"}'\nexit 1\n")
    req = request.parse(dict(_env(), CNI_PATH=f"/nonexistent:{tmp_path}"),
                        json.dumps(_ipam_conf(tmp_path, type="ipam-fails")).encode())
    with pytest.raises(errors.CNIError) as info:
        delegate.call("ADD", "ipam-fails", req)
    assert (info.value.code, info.value.msg) == (errors.POOL_EXHAUSTED, "pool exhausted")


def test_a_delegate_runs_through_the_executor_given() -> None:
    fake = FakeExec({"ipam": {"ADD": (result_of("10.1.0.2/24"), 0)}})
    res = delegate.invoke("ipam", "ADD", _env("DEL"), b'{"x": 1}', ["/nowhere"], fake)
    assert res is not None and res["ips"] == [{"address": "10.1.0.2/24"}]
    assert fake.calls == [("ipam", "ADD", {"x": 1})]


def test_the_process_executor_is_the_default_and_can_be_replaced() -> None:
    fake = FakeExec({"ipam": {"DEL": (b'{"code": 11, "msg": "try again"}', 1)}})
    previous = executors.use(fake)
    try:
        with pytest.raises(errors.CNIError) as info:
            delegate.invoke("ipam", "DEL", _env(), b"{}", ["/nowhere"])
    finally:
        executors.use(previous)
    assert (info.value.code, info.value.msg) == (11, "try again")
    assert fake.calls == [("ipam", "DEL", {})]


def test_a_runtime_without_plugins_loaded_asks_the_agent_for_our_own_plugins(
        plugin_bin: str, agent: str, tmp_path: Path) -> None:
    """`netkit run` imports the installer (and with it the plugin registry) but no plugin module: its
    own plugins must then be answered by the warm agent, not loaded in-process."""
    code = (
        "import json, sys\n"
        "import netkit.launch.install\n"  # what the runtime imports: the registry comes with it
        "from netkit.cni import delegate\n"
        "from netkit.launch import invoker\n"
        "invoker.use()\n"  # as every netkit command does
        "res = delegate.invoke('netkit-ipam', 'ADD', json.loads(sys.argv[1]), sys.argv[2].encode(), [sys.argv[3]])\n"
        "print(json.dumps({'ips': res['ips'], 'loaded': 'netkit.plugins.ipam' in sys.modules}))\n"
    )
    env = dict(_env(), NETKIT_AGENT_SOCKET=agent)
    out = subprocess.run([sys.executable, "-c", code, json.dumps(env), json.dumps(_ipam_conf(tmp_path)), plugin_bin],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    answer = json.loads(out)
    assert answer["ips"][0]["address"].startswith("10.7.0.")
    assert answer["loaded"] is False  # served by the agent: the IPAM module never loaded here
