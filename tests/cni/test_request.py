"""Parsing and validating one CNI invocation: the CNI_* environment and the config on stdin."""

from __future__ import annotations

import json

import pytest

from netkit import errors
from netkit.cni import request


def _env(command: str = "ADD", **extra: str) -> dict[str, str]:
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0"}
    env.update(extra)
    return env


def _conf(**extra: object) -> bytes:
    conf: dict[str, object] = {"cniVersion": "1.0.0", "name": "net", "type": "netkit-ipam"}
    conf.update(extra)
    return json.dumps(conf).encode()


def _code(env: dict[str, str], stdin: bytes) -> int:
    with pytest.raises(errors.CNIError) as info:
        request.parse(env, stdin)
    return info.value.code


def test_parse_valid_add_fills_every_field() -> None:
    req = request.parse(_env(CNI_ARGS="IP=10.0.0.5;K8S_POD_NAME=p", CNI_PATH="/a::/b"), _conf())
    assert req.command == "ADD"
    assert req.cni_version == "1.0.0"
    assert req.network == "net"
    assert req.container_id == "c1"
    assert req.netns == "/run/netns/x"
    assert req.ifname == "eth0"
    assert req.args == {"IP": "10.0.0.5", "K8S_POD_NAME": "p"}
    assert req.path == ["/a", "/b"]


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_every_supported_version_is_accepted(version: str) -> None:
    assert request.parse(_env(), _conf(cniVersion=version)).cni_version == version


@pytest.mark.parametrize("stdin", [b"{not json", b"", b'{"a": "\xff\xfe"}', b"[" * 100000, b"[1, 2]", b'"s"',
                                   b"null"])
def test_malformed_config_is_decode_failure(stdin: bytes) -> None:
    assert _code(_env(), stdin) == errors.DECODE_FAILURE


@pytest.mark.parametrize("version", [None, "0.2.0", "2.0.0", 1, "1.0"])
def test_unsupported_or_missing_version_is_code_1(version: object) -> None:
    conf = json.loads(_conf())
    if version is None:
        del conf["cniVersion"]
    else:
        conf["cniVersion"] = version
    assert _code(_env(), json.dumps(conf).encode()) == errors.INCOMPATIBLE_VERSION


@pytest.mark.parametrize("command", ["", "add", "BOGUS"])
def test_unknown_command_is_code_4(command: str) -> None:
    assert _code(_env(command), _conf()) == errors.INVALID_ENV


def test_missing_command_is_code_4() -> None:
    env = _env()
    del env["CNI_COMMAND"]
    assert _code(env, _conf()) == errors.INVALID_ENV


@pytest.mark.parametrize("var", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"])
def test_add_without_required_variable_is_code_4(var: str) -> None:
    env = _env()
    del env[var]
    with pytest.raises(errors.CNIError) as info:
        request.parse(env, _conf())
    assert info.value.code == errors.INVALID_ENV
    assert var in info.value.details


def test_del_does_not_need_netns() -> None:
    env = _env("DEL")
    del env["CNI_NETNS"]
    assert request.parse(env, _conf()).netns == ""


@pytest.mark.parametrize("ifname", ["a" * 16, "\u00e9" * 8, "a/b", "..", ".", "eth 0", "eth\t0", "eth:0", "eth0\n"])
def test_bad_ifname_is_code_4(ifname: str) -> None:
    assert _code(_env(CNI_IFNAME=ifname), _conf()) == errors.INVALID_ENV


def test_fifteen_byte_ifname_is_accepted() -> None:
    assert request.parse(_env(CNI_IFNAME="a" * 15), _conf()).ifname == "a" * 15


@pytest.mark.parametrize("cid", ["-abc", ".abc", "a b", "a/b", "a;b", "abc$", "_x"])
def test_bad_container_id_is_code_4(cid: str) -> None:
    assert _code(_env(CNI_CONTAINERID=cid), _conf()) == errors.INVALID_ENV


def test_container_id_with_trailing_newline_is_refused() -> None:
    # The spec's pattern is anchored at the end of the string; Python's "$" also matches before a
    # final newline, so "abc\n" must be refused explicitly.
    assert _code(_env(CNI_CONTAINERID="abc\n"), _conf()) == errors.INVALID_ENV


def test_container_id_with_allowed_punctuation_is_accepted() -> None:
    assert request.parse(_env(CNI_CONTAINERID="a1_b.c-d"), _conf()).container_id == "a1_b.c-d"


@pytest.mark.parametrize("args", ["IP", "=10.0.0.1", "IP=1;junk"])
def test_malformed_cni_args_is_code_4(args: str) -> None:
    assert _code(_env(CNI_ARGS=args), _conf()) == errors.INVALID_ENV


def test_cni_args_tolerates_empty_pairs_and_equals_in_value() -> None:
    assert request.parse_args(";A=1;;B=x=y;") == {"A": "1", "B": "x=y"}


def test_check_needs_0_4_0() -> None:
    assert _code(_env("CHECK"), _conf(cniVersion="0.3.1")) == errors.INCOMPATIBLE_VERSION
    assert request.parse(_env("CHECK"), _conf(cniVersion="0.4.0")).command == "CHECK"


@pytest.mark.parametrize("command", ["GC", "STATUS"])
def test_gc_and_status_need_1_1_0(command: str) -> None:
    assert _code({"CNI_COMMAND": command}, _conf(cniVersion="1.0.0")) == errors.INCOMPATIBLE_VERSION
    assert request.parse({"CNI_COMMAND": command}, _conf(cniVersion="1.1.0")).command == command


def test_config_without_name_is_code_7() -> None:
    conf = json.loads(_conf())
    del conf["name"]
    assert _code(_env(), json.dumps(conf).encode()) == errors.INVALID_CONFIG


def test_valid_attachments_parsed_and_validated() -> None:
    good = request.parse({"CNI_COMMAND": "GC"}, _conf(cniVersion="1.1.0", **{
        "cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}, {"containerID": "b", "ifname": "net1"}]}))
    assert good.valid_attachments == {("a", "eth0"), ("b", "net1")}
    bad = request.parse({"CNI_COMMAND": "GC"}, _conf(cniVersion="1.1.0", **{"cni.dev/valid-attachments": "a"}))
    with pytest.raises(errors.CNIError) as info:
        bad.valid_attachments
    assert info.value.code == errors.INVALID_CONFIG


def test_runtime_config_non_object_reads_as_empty() -> None:
    assert request.parse(_env(), _conf(runtimeConfig=[1])).runtime_config == {}
    assert request.parse(_env(), _conf(runtimeConfig={"ips": ["10.0.0.2"]})).runtime_config == {"ips": ["10.0.0.2"]}


def test_prev_result_is_normalized() -> None:
    prev = {"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.0.0.2/24"}]}
    req = request.parse(_env(), _conf(prevResult=prev))
    assert req.prev_result == {"ips": [{"address": "10.0.0.2/24"}]}
    assert request.parse(_env(), _conf()).prev_result is None
