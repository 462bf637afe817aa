"""Property-based: any config, any CNI_* environment, any stdin bytes get a CNI answer and leave nothing.

Every plugin runs inside a sandbox host against a sandbox container.  An example that succeeds is
deleted again with the same input; one that fails must have created nothing (the network's own
bridge excepted, which outlives attachments by design).
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from netkit import errors
from netkit.cni import request
from netkit.launch import invoker
from netkit.net import netns
from tests.fuzz import cni, fuzz_settings
from tests.sandbox import Namespace, Sandbox, bridge_conf


def _bases(box: Sandbox, c: Namespace) -> dict[str, dict[str, Any]]:
    """A valid config for each plugin, the seed every mutation starts from."""
    ipam = bridge_conf(box)["ipam"]
    mappings = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": 8081, "containerPort": 81, "protocol": "udp", "hostIP": "10.30.0.1"}]
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "nkbr0"}, {"name": "eth0", "sandbox": c.path}],
            "ips": [{"address": "10.20.0.9/24", "gateway": "10.20.0.1", "interface": 1}]}
    return {
        "netkit-bridge": bridge_conf(box, version="1.1.0", ipMasq=True, capabilities={"portMappings": True},
                                     runtimeConfig={"portMappings": mappings}),
        "netkit-ipam": {"cniVersion": "1.1.0", "name": "testnet", "type": "netkit-ipam", "ipam": ipam},
        "netkit-portmap": {"cniVersion": "1.1.0", "name": "testnet", "type": "netkit-portmap",
                           "capabilities": {"portMappings": True}, "runtimeConfig": {"portMappings": mappings},
                           "prevResult": prev},
        "netkit-loopback": {"cniVersion": "1.0.0", "name": "lo", "type": "netkit-loopback"},
        "netkit-none": {"cniVersion": "1.0.0", "name": "none", "type": "netkit-none"},
        "netkit-host": {"cniVersion": "1.1.0", "name": "host", "type": "netkit-host"},
        "netkit-container": {"cniVersion": "1.0.0", "name": "joined", "type": "netkit-container",
                             "container": c.path},
    }


@st.composite
def _invocation(draw: st.DrawFn, box: Sandbox, c: Namespace, focus: str) -> tuple[str, dict[str, str], bytes, Any]:
    """(plugin, env, stdin, the config as sent or None when stdin is not a config).

    ``focus``: "conf" mutates the config under a valid environment, "env" the environment under a
    valid config, "any" both and sometimes stdin bytes as well.
    """
    plugin = draw(st.sampled_from(cni.WEIGHTED_PLUGINS))
    base = _bases(box, c)[plugin]
    conf = base if focus == "env" else draw(st.one_of(st.just(base), cni.mutated(base), cni.mutated(base)))
    if focus == "conf":
        env = box.env(draw(st.sampled_from(["ADD", "ADD", "ADD", "DEL", "CHECK", "GC", "STATUS"])), c)
    else:
        env = draw(cni.environments(box, c))
    if focus == "any" and draw(st.integers(0, 3)) == 0:
        stdin = draw(cni.stdin_bytes(st.just(conf)))
    else:
        stdin = json.dumps(conf).encode()
    try:
        sent = json.loads(stdin)
    except ValueError:
        sent = None
    return plugin, env, stdin, sent


def _in_process(box: Sandbox, plugin: str, env: dict[str, str], stdin: bytes) -> tuple[bytes, int]:
    with netns.entered(box.host.path):
        return invoker.handle(plugin, env, stdin)


def _exec(box: Sandbox, plugin: str, env: dict[str, str], stdin: bytes) -> tuple[bytes, int]:
    # A real environment cannot carry NUL: a C string ends there.
    env = {k: v.split("\0", 1)[0] for k, v in env.items()}
    proc = subprocess.run(["ip", "netns", "exec", box.host.name, os.path.join(box.bin_dir, plugin)], input=stdin,
                          env=env, capture_output=True, timeout=60)
    assert b"Traceback" not in proc.stderr, proc.stderr.decode(errors="replace")
    return proc.stdout, proc.returncode


def _check_one(box: Sandbox, c: Namespace, run: Any, invocation: tuple[str, dict[str, str], bytes, Any]) -> None:
    plugin, env, stdin, sent = invocation
    before = cni.snapshot(box, c)
    out, rc = run(box, plugin, env, stdin)
    command = env.get("CNI_COMMAND", "")
    body = cni.assert_cni_answer(out, rc, command)
    # Shown by --hypothesis-show-statistics: how often each outcome was reached.
    event(f"{plugin} {command}: " + ("ok" if rc == 0 else f"code {body['code'] if body else '?'}"))
    if rc == 0 and command == "ADD":
        # Whatever ADD accepted, DEL with the same input takes back.
        out, rc = run(box, plugin, dict(env, CNI_COMMAND="DEL"), stdin)
        assert (rc, out) == (0, b""), out
    cni.assert_nothing_created(before, cni.snapshot(box, c), sent)


@fuzz_settings(150, 3000)
@given(data=st.data())
def test_any_config_under_a_valid_environment_gets_cni_json_and_leaves_nothing(host: Sandbox,
                                                                             data: st.DataObject) -> None:
    with cni.container(host) as c:
        _check_one(host, c, _in_process, data.draw(_invocation(host, c, "conf")))


@fuzz_settings(100, 2000)
@given(data=st.data())
def test_any_environment_with_a_valid_config_gets_cni_json_and_leaves_nothing(host: Sandbox,
                                                                            data: st.DataObject) -> None:
    with cni.container(host) as c:
        _check_one(host, c, _in_process, data.draw(_invocation(host, c, "env")))


@fuzz_settings(20, 400)
@given(data=st.data())
def test_executables_answer_any_input_with_cni_json_and_leave_nothing(box: Sandbox, data: st.DataObject) -> None:
    # Both ways the executables answer: in-process and through the warm agent (the box fixture).
    with cni.container(box) as c:
        _check_one(box, c, _exec, data.draw(_invocation(box, c, "any")))


@fuzz_settings(100, 2000)
@given(plugin=st.sampled_from(cni.PLUGINS), command=st.sampled_from(cni.COMMANDS), stdin=st.binary(max_size=300))
def test_random_bytes_on_stdin_are_refused_cleanly(host: Sandbox, plugin: str, command: str, stdin: bytes) -> None:
    with cni.container(host) as c:
        out, rc = _in_process(host, plugin, host.env(command, c), stdin)
    body = cni.assert_cni_answer(out, rc, command)
    if command != "VERSION":
        assert rc == 1 and body is not None and body["code"] in (errors.DECODE_FAILURE, errors.INCOMPATIBLE_VERSION,
                                                                 errors.INVALID_CONFIG), body


@fuzz_settings(200, 5000)
@given(raw=st.one_of(cni.cni_args, st.text(max_size=40)))
def test_cni_args_parse_to_pairs_or_code_4(raw: str) -> None:
    try:
        pairs = request.parse_args(raw)
    except errors.CNIError as exc:
        assert exc.code == errors.INVALID_ENV
        return
    assert all(key and ";" not in key and "=" not in key for key in pairs)
    assert all(";" not in value for value in pairs.values())


@fuzz_settings(200, 5000)
@given(name=st.one_of(cni.ifnames, st.text(max_size=20)))
def test_interface_names_are_kernel_valid_or_code_4(name: str) -> None:
    try:
        request.validate_ifname(name)
    except errors.CNIError as exc:
        assert exc.code == errors.INVALID_ENV
        return
    raw = name.encode()
    assert 1 <= len(raw) <= 15 and name not in (".", "..")
    assert not any(c in raw for c in b"/: \t\n\r\v\f\x00")
