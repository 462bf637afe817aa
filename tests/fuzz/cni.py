"""Strategies for hostile CNI input, and the checks every answer must pass.

Generated ``CNI_NETNS`` values are only ever a sandbox container's path, paths that cannot exist,
or files known to be harmless to open: never a path a random string could turn into a device.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from typing import Any, Iterator

from hypothesis import strategies as st

from netkit.cni import version as versions
from tests.sandbox import Namespace, Sandbox, ip

PLUGINS = ["netkit-bridge", "netkit-ipam", "netkit-portmap", "netkit-loopback", "netkit-none", "netkit-host",
           "netkit-container"]
# The plugins with the most config to get wrong come up more often.
WEIGHTED_PLUGINS = PLUGINS[:3] * 3 + PLUGINS[3:]
COMMANDS = ["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION"]

# JSON scalars, including the awkward ones: huge numbers, NUL and lone surrogates in strings.
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
    st.sampled_from(["", "\x00", "\udcff", "a" * 300, "10.20.0.0/24", "10.20.0.300", "::/0", "0.0.0.0/0",
                     "eth0", "lo", "..", "/", "nkbr0", "1.0.0", "0.2.0", "tcp", "sctp"]),
)
json_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=12)

# CNI_ARGS with odd ';' and '=' structure: empty pairs, missing keys or values, '=' in values.
_arg_token = st.one_of(st.text(alphabet="ab=;IPMAC_.:,0123456789 ", max_size=12),
                       st.sampled_from(["IP=10.20.0.7", "MAC=02:00:00:00:00:01", "IgnoreUnknown=1", "=", ";",
                                        "==", "K8S_POD_NAME=a=b", "IP=", "IP=10.20.0.7,10.20.0.8", "IP",
                                        "MAC=zz", "IP=::1", "IP=10.20.0.1"]))
cni_args = st.lists(_arg_token, max_size=5).map(";".join)

container_ids = st.one_of(st.sampled_from(["", "-x", "a b", "../x", "x" * 300, "c\udcff", "c\n", "ok-1.2_3"]),
                          st.text(max_size=12))
ifnames = st.one_of(st.sampled_from(["", "/", "eth/0", "..", ".", "a b", "a" * 16, "é" * 8, "eth0\x00x",
                                     "eth0\n", "eth:0", "eth\udcff", "lo", "eth0", "net1"]),
                    st.text(max_size=18))


def _netns_choices(container: Namespace) -> st.SearchStrategy[str]:
    return st.one_of(
        st.just(container.path),
        st.sampled_from(["", "/nonexistent/netns", "/etc/hostname", "/", "/proc/self/ns/net",
                         "/proc/thread-self/ns/net", "relative/path", "/run/netns/"]),
        st.text(alphabet="abc/.", max_size=10).map(lambda s: "/nonexistent/" + s),
    )


_commands = st.sampled_from(["ADD"] * 8 + ["DEL"] * 3 + ["CHECK", "GC", "STATUS", "VERSION", "", "add", "REBOOT",
                                                         "ADD "])


@st.composite
def environments(draw: st.DrawFn, box: Sandbox, container: Namespace, command: str | None = None) -> dict[str, str]:
    """A CNI_* environment: each variable kept, dropped, or replaced by something malformed or hostile."""
    env = box.env("ADD", container)
    env["CNI_COMMAND"] = command or draw(_commands)
    for var, strategy in (("CNI_CONTAINERID", st.one_of(st.just(container.name), container_ids)),
                          ("CNI_IFNAME", ifnames),
                          ("CNI_NETNS", _netns_choices(container)),
                          ("CNI_ARGS", cni_args),
                          ("CNI_PATH", st.sampled_from([box.cni_path, "", "/nonexistent", ":::", box.bin_dir]))):
        choice = draw(st.sampled_from(["keep"] * 5 + ["drop", "draw", "draw"]))
        if choice == "drop":
            env.pop(var, None)
        elif choice == "draw" or var not in env:
            env[var] = draw(strategy)
    return env


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into a JSON value."""
    out = [prefix]
    if isinstance(obj, dict):
        for key, value in obj.items():
            out += _paths(value, prefix + (key,))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            out += _paths(value, prefix + (i,))
    return out


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any], max_mutations: int = 3) -> dict[str, Any]:
    """``base`` with a few keys replaced by random JSON, deleted, or added."""
    conf = copy.deepcopy(base)
    for _ in range(draw(st.integers(min_value=1, max_value=max_mutations))):
        paths = _paths(conf)
        # Half the time a top-level key: the plugins' own keys are where type confusion hides.
        shallow = [p for p in paths if len(p) == 1]
        path = draw(st.sampled_from(shallow if shallow and draw(st.booleans()) else paths))
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if not path:
            if action == "add":
                conf[draw(st.sampled_from(list(base) + ["extra", "dns", "args", "capabilities"]))] = draw(json_values)
            continue
        parent: Any = conf
        for step in path[:-1]:
            parent = parent[step]
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent[path[-1]], dict):
            parent[path[-1]][draw(st.text(max_size=10))] = draw(json_values)
        else:
            parent[path[-1]] = draw(json_values)
    return conf


def stdin_bytes(conf: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    """stdin: a (mutated) config, or random bytes, or any JSON value, or a config cut short."""
    return st.one_of(
        conf.map(lambda c: json.dumps(c).encode()),
        conf.map(lambda c: json.dumps(c).encode()),
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.tuples(conf, st.integers(min_value=0, max_value=400)).map(lambda t: json.dumps(t[0]).encode()[:t[1]]),
    )


def assert_cni_answer(out: bytes, rc: int, command: str) -> dict[str, Any] | None:
    """``out`` is what the spec allows for ``command`` with exit status ``rc``; returns the parsed JSON.

    Success: status 0 and a result object (ADD, VERSION) or nothing.  Failure: status 1 and the
    spec's error object, never netkit's internal-error code (hostile input is not a netkit bug).
    """
    assert b"Traceback" not in out, out
    body = json.loads(out) if out.strip() else None
    if rc == 0:
        if command in ("ADD", "VERSION"):
            assert isinstance(body, dict) and body.get("cniVersion") in versions.SUPPORTED, out
            assert "code" not in body, out
        else:
            assert body is None, out
        return body
    assert rc == 1, (rc, out)
    assert isinstance(body, dict), out
    assert {"cniVersion", "code", "msg"} <= set(body) <= {"cniVersion", "code", "msg", "details"}, body
    assert body["cniVersion"] in versions.SUPPORTED, body
    assert isinstance(body["code"], int) and not isinstance(body["code"], bool), body
    assert isinstance(body["msg"], str) and body["msg"], body
    assert isinstance(body.get("details", ""), str), body
    assert body["code"] != 100, f"internal error on hostile input: {body}"
    return body


@contextlib.contextmanager
def container(box: Sandbox) -> Iterator[Namespace]:
    """A container namespace for one example, deleted after it (thousands of examples, one sandbox)."""
    ns = box.container()
    try:
        yield ns
    finally:
        ip("netns", "del", ns.name, check=False)
        box.containers.remove(ns)


def snapshot(box: Sandbox, container: Namespace) -> dict[str, Any]:
    """What an ADD would leave behind: host links, container links, leases, firewall chains."""
    leases = []
    if os.path.isdir(box.data_dir):
        for network in sorted(os.listdir(box.data_dir)):
            leases += [f"{network}/{lease}" for lease in box.leases(network)]
    return {"host": sorted(box.host.links()), "container": sorted(container.links()), "leases": leases,
            "chains": box.group_chains()}


def assert_nothing_created(before: dict[str, Any], after: dict[str, Any], conf: object = None) -> None:
    """No object of the attachment appeared; only the network's own bridge (``conf``'s) may have been made."""
    new_host = set(after["host"]) - set(before["host"])
    bridge = (conf.get("bridge") or "cni0") if isinstance(conf, dict) else None
    allowed = {bridge} if isinstance(bridge, str) else set()
    assert new_host <= allowed, f"links left in the host: {sorted(new_host - allowed)}"
    assert after["container"] == before["container"], after["container"]
    assert after["leases"] == before["leases"], after["leases"]
    assert after["chains"] == before["chains"], after["chains"]
