"""The protocol core: handle(plugin, env, stdin) -> (stdout, exit code); every failure is error JSON."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from netkit import errors, plugins
from netkit.cni import handler, version
from netkit.cni.request import Request
from netkit.cni.result import Result

VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


def _env(command: str = "ADD", **extra: str) -> dict[str, str]:
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0"}
    env.update(extra)
    return env


def _conf(tmp_path: Path, cni_version: str = "1.0.0", **ipam: Any) -> dict[str, Any]:
    section: dict[str, Any] = {"type": "netkit-ipam", "ranges": [[{"subnet": "10.9.0.0/24"}]],
                               "dataDir": str(tmp_path / "leases")}
    section.update(ipam)
    return {"cniVersion": cni_version, "name": "net", "type": "netkit-ipam", "ipam": section}


def _call(env: dict[str, str], stdin: bytes | dict[str, Any], plugin: str = "netkit-ipam") -> tuple[int, Any, bytes]:
    raw = stdin if isinstance(stdin, bytes) else json.dumps(stdin).encode()
    out, code = handler.handle(plugins.get(plugin), env, raw)
    assert isinstance(out, bytes)
    return code, (json.loads(out) if out.strip() else None), out


def _assert_error(env: dict[str, str], stdin: bytes | dict[str, Any], code: int,
                  plugin: str = "netkit-ipam") -> dict[str, Any]:
    status, body, raw = _call(env, stdin, plugin)
    assert status == 1, raw
    assert b"Traceback" not in raw
    assert set(body) <= {"cniVersion", "code", "msg", "details"}
    assert {"cniVersion", "code", "msg"} <= set(body)
    assert body["code"] == code, body
    assert isinstance(body["msg"], str) and body["msg"]
    assert body["cniVersion"] in version.SUPPORTED
    if "details" in body:
        assert isinstance(body["details"], str) and body["details"]
    return body


# VERSION ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("asked", VERSIONS)
def test_version_lists_every_version_and_echoes_the_asked_one(asked: str) -> None:
    status, body, _ = _call({"CNI_COMMAND": "VERSION"}, {"cniVersion": asked})
    assert status == 0
    assert body == {"cniVersion": asked, "supportedVersions": VERSIONS}


def test_version_with_empty_stdin_answers_latest() -> None:
    status, body, _ = _call({"CNI_COMMAND": "VERSION"}, b"")
    assert status == 0
    assert body["cniVersion"] == "1.1.0"
    assert body["supportedVersions"] == VERSIONS


@pytest.mark.parametrize("stdin", [b"{bad", b"[" * 100000, b"\xff\xfe", b'{"cniVersion": "9.9.9"}'])
def test_version_never_fails_on_odd_stdin(stdin: bytes) -> None:
    status, body, _ = _call({"CNI_COMMAND": "VERSION"}, stdin)
    assert status == 0
    assert body["supportedVersions"] == VERSIONS


# Decoding --------------------------------------------------------------------------------------

@pytest.mark.parametrize("stdin", [b"{not json", b"", b'{"cniVersion": "1.0.0", "name": "\xff"}',
                                   b"[" * 100000, b"{" * 100000, b"[1, 2, 3]", b'"a string"', b"42"])
def test_undecodable_config_is_code_6(stdin: bytes) -> None:
    body = _assert_error(_env(), stdin, errors.DECODE_FAILURE)
    assert body["cniVersion"] == version.LATEST


def test_error_json_output_is_terminated_and_parseable() -> None:
    out, code = handler.handle(plugins.get("netkit-ipam"), _env(), b"{")
    assert code == 1
    assert out.endswith(b"\n")
    json.loads(out)


# Versions and commands -------------------------------------------------------------------------

def test_unsupported_cni_version_is_code_1(tmp_path: Path) -> None:
    _assert_error(_env(), _conf(tmp_path, "0.2.0"), errors.INCOMPATIBLE_VERSION)


def test_missing_cni_version_is_code_1(tmp_path: Path) -> None:
    conf = _conf(tmp_path)
    del conf["cniVersion"]
    _assert_error(_env(), conf, errors.INCOMPATIBLE_VERSION)


def test_missing_command_is_code_4(tmp_path: Path) -> None:
    env = _env()
    del env["CNI_COMMAND"]
    _assert_error(env, _conf(tmp_path), errors.INVALID_ENV)


def test_unknown_command_is_code_4(tmp_path: Path) -> None:
    _assert_error(_env("REBOOT"), _conf(tmp_path), errors.INVALID_ENV)


@pytest.mark.parametrize("var", ["CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS"])
def test_add_missing_variable_is_code_4(tmp_path: Path, var: str) -> None:
    env = _env()
    del env[var]
    body = _assert_error(env, _conf(tmp_path), errors.INVALID_ENV)
    assert var in body["details"]


@pytest.mark.parametrize("ifname", ["a" * 16, "eth/0", "..", "eth 0"])
def test_bad_ifname_is_code_4(tmp_path: Path, ifname: str) -> None:
    _assert_error(_env(CNI_IFNAME=ifname), _conf(tmp_path), errors.INVALID_ENV)
    assert not (tmp_path / "leases" / "net").exists() or not [
        n for n in os.listdir(tmp_path / "leases" / "net") if n[0].isdigit()]


@pytest.mark.parametrize("cid", ["-x", "a b", "../x", ""])
def test_bad_container_id_is_code_4(tmp_path: Path, cid: str) -> None:
    _assert_error(_env(CNI_CONTAINERID=cid), _conf(tmp_path), errors.INVALID_ENV)


def test_malformed_cni_args_is_code_4(tmp_path: Path) -> None:
    _assert_error(_env(CNI_ARGS="IP"), _conf(tmp_path), errors.INVALID_ENV)


def test_check_with_0_3_1_is_code_1(tmp_path: Path) -> None:
    body = _assert_error(_env("CHECK"), _conf(tmp_path, "0.3.1"), errors.INCOMPATIBLE_VERSION)
    assert body["cniVersion"] == version.LATEST


@pytest.mark.parametrize("command", ["GC", "STATUS"])
def test_gc_and_status_with_1_0_0_are_code_1(tmp_path: Path, command: str) -> None:
    _assert_error({"CNI_COMMAND": command}, _conf(tmp_path, "1.0.0"), errors.INCOMPATIBLE_VERSION)


# Config errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("ranges", [
    [[{"subnet": "10.9.0.0/33"}]],
    [[{"subnet": "not-a-subnet"}]],
    [[{"subnet": "10.9.0.0/24", "rangeStart": "10.8.0.5"}]],
    [[{"subnet": "10.9.0.0/24", "rangeEnd": "10.9.1.5"}]],
    [[{"subnet": "10.9.0.0/24"}], [{"subnet": "10.9.0.0/25"}]],
    [[{"subnet": "10.9.0.0/24", "rangeStart": "10.9.0.10", "rangeEnd": "10.9.0.20"},
      {"subnet": "10.9.0.0/24", "rangeStart": "10.9.0.15", "rangeEnd": "10.9.0.30"}]],
])
def test_bad_ranges_are_code_7_and_echo_the_request_version(tmp_path: Path, ranges: list[Any]) -> None:
    body = _assert_error(_env(), _conf(tmp_path, "0.4.0", ranges=ranges), errors.INVALID_CONFIG)
    assert body["cniVersion"] == "0.4.0"


def test_unknown_plugin_is_code_100(tmp_path: Path) -> None:
    body = _assert_error(_env(), _conf(tmp_path), errors.INTERNAL, plugin="netkit-nonesuch")
    assert "netkit-nonesuch" in body.get("details", "")


def test_unexpected_exception_in_plugin_is_code_100_without_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A plugin whose add() has a bug: the handler must still answer with error JSON.
    from netkit import plugins

    monkeypatch.setitem(plugins.REGISTRY, "netkit-broken", ("tests.cni.broken_plugin", "raises"))
    body = _assert_error(_env(), _conf(tmp_path), errors.INTERNAL, plugin="netkit-broken")
    assert body["cniVersion"] == "1.0.0"
    assert "ZeroDivisionError" in body["details"]


@pytest.mark.parametrize("ips", [5, "10.0.0.5", [5]])
def test_wrongly_typed_runtime_config_ips_is_code_7(tmp_path: Path, ips: Any) -> None:
    conf = _conf(tmp_path)
    conf["runtimeConfig"] = {"ips": ips}
    _assert_error(_env(), conf, errors.INVALID_CONFIG)


# Success paths -----------------------------------------------------------------------------------

@pytest.mark.parametrize("cni_version", VERSIONS)
def test_add_answers_in_the_requested_version(tmp_path: Path, cni_version: str) -> None:
    status, body, _ = _call(_env(), _conf(tmp_path, cni_version))
    assert status == 0
    assert body["cniVersion"] == cni_version
    assert body["ips"][0]["address"] == "10.9.0.2/24"
    assert ("version" in body["ips"][0]) == (cni_version < "1.0.0")


def test_del_success_prints_nothing(tmp_path: Path) -> None:
    out, code = handler.handle(plugins.get("netkit-ipam"), _env("DEL"), json.dumps(_conf(tmp_path)).encode())
    assert (out, code) == (b"", 0)


def test_about_names_plugin_and_versions() -> None:
    text = handler.about("netkit-ipam", plugins.describe("netkit-ipam"))
    assert "netkit-ipam" in text and "host-local" in text
    assert "1.1.0" in text and "0.3.0" in text


class _Recorder:
    """A plugin as the handler sees one: just its functions (no registry, no module)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def add(self, req: Request) -> Result:
        self.calls.append(f"ADD {req.container_id}")
        return {"ips": [{"address": "10.9.9.9/24"}]}

    def delete(self, req: Request) -> None:
        self.calls.append("DEL")

    def check(self, req: Request) -> None:
        self.calls.append("CHECK")

    def status(self, req: Request) -> None:
        self.calls.append("STATUS")

    def gc(self, req: Request) -> None:
        self.calls.append("GC")


def test_the_handler_runs_the_functions_it_is_given(tmp_path: Path) -> None:
    plugin = _Recorder()
    for command in ("ADD", "CHECK", "DEL"):
        stdin = dict(_conf(tmp_path), prevResult={"cniVersion": "1.0.0"}) if command == "CHECK" else _conf(tmp_path)
        out, code = handler.handle(plugin, _env(command), json.dumps(stdin).encode())
        assert code == 0, out
    assert json.loads(handler.handle(plugin, _env(), json.dumps(_conf(tmp_path)).encode())[0])["ips"] == [
        {"address": "10.9.9.9/24"}]
    out, code = handler.handle(plugin, {"CNI_COMMAND": "VERSION"}, b"{}")
    assert code == 0 and "supportedVersions" in json.loads(out)
    assert plugin.calls == ["ADD c1", "CHECK", "DEL", "ADD c1"]  # VERSION never reaches the plugin


# The real executable ---------------------------------------------------------------------------

def _exec(plugin_bin: str, env: dict[str, str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([os.path.join(plugin_bin, "netkit-ipam")], input=stdin, env={**env, "NETKIT_AGENT": "off"},
                          capture_output=True, timeout=30)


def test_executable_version(plugin_bin: str) -> None:
    proc = _exec(plugin_bin, {"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "0.4.0"}')
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"cniVersion": "0.4.0", "supportedVersions": VERSIONS}


def test_executable_deep_json_is_code_6_without_traceback(plugin_bin: str) -> None:
    proc = _exec(plugin_bin, _env(), b"[" * 100000)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["code"] == errors.DECODE_FAILURE
    assert b"Traceback" not in proc.stderr


def test_executable_without_command_prints_about(plugin_bin: str) -> None:
    proc = _exec(plugin_bin, {}, b"")
    assert proc.returncode == 0
    assert proc.stdout == b""
    assert b"netkit-ipam" in proc.stderr


def test_version_answer_is_json_s_own_text() -> None:
    # VERSION is answered without importing json: the bytes must be what json.dumps(indent=2) wrote.
    for asked in version.SUPPORTED:
        assert handler.version_text(asked) == json.dumps(
            {"cniVersion": asked, "supportedVersions": list(version.SUPPORTED)}, indent=2).encode() + b"\n"


def test_version_request_read_without_json_only_in_its_plain_form() -> None:
    assert handler.asked_version(b'{"cniVersion":"0.4.0"}') == "0.4.0"
    assert handler.asked_version(b' { "cniVersion" :\n "1.0.0" } \n') == "1.0.0"
    for other in (b"", b"{}", b'{"cniVersion":"1.0.0","name":"x"}', b'{"name":"a:b"}', b'{"cniVersion":1}',
                  b'{"cniVersion":"1.0\\u002e0"}', b'["cniVersion"]'):
        assert handler.asked_version(other) is None, other
