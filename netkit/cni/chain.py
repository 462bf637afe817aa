"""Running a network config list the way libcni does, for netkit's own runtime and CLI.

ADD runs the plugins in list order, each getting the previous one's result as ``prevResult``; DEL
runs them in reverse with the cached ADD result; CHECK in order with it.  Capability arguments
(``runtimeConfig``) go only to plugins that declare the capability.  The result of ADD is cached
per attachment so DEL and CHECK can send it on.  Each plugin runs through ``executor`` (default:
the process's, see executor.use), so a test can run a list against a fake.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from netkit import errors, fileio
from netkit.cni import delegate
from netkit.cni import executor as executors
from netkit.cni import result as results
from netkit.cni import version as versions
from netkit.rollback import Rollback

DEFAULT_CACHE_DIR = "/var/lib/cni"


@dataclass
class Attachment:
    """One container interface on one network."""

    container_id: str
    netns: str
    ifname: str = "eth0"
    args: dict[str, str] = field(default_factory=dict)
    capability_args: dict[str, Any] = field(default_factory=dict)


def container_id_for(netns: str) -> str:
    """The container ID cnitool derives for a bare namespace: 10 bytes of sha512 of its path."""
    return "cnitool-" + hashlib.sha512(os.path.abspath(netns).encode()).hexdigest()[:20]


def _config_files(conf_dir: str) -> list[str]:
    """Config files in libcni's order: ``*.conflist`` first, then ``*.conf`` and ``*.json``."""
    lists = sorted(glob.glob(os.path.join(conf_dir, "*.conflist")))
    singles = sorted(glob.glob(os.path.join(conf_dir, "*.conf")) + glob.glob(os.path.join(conf_dir, "*.json")))
    return lists + singles


def load(conf_dir: str, name: str) -> dict[str, Any]:
    """The network named ``name`` in ``conf_dir`` (a single-plugin ``.conf`` is wrapped into a list)."""
    for path in _config_files(conf_dir):
        try:
            with open(path, encoding="utf-8") as f:
                conf = json.load(f)
        except (OSError, ValueError):
            continue
        if not isinstance(conf, dict) or conf.get("name") != name:
            continue
        if "plugins" not in conf:
            conf = {"cniVersion": conf.get("cniVersion"), "name": name, "plugins": [conf]}
        return conf
    raise errors.CNIError(errors.INVALID_CONFIG, f"no network named {name!r}", f"in {conf_dir}")


def _netconf(conflist: dict[str, Any], plugin: dict[str, Any], att: Attachment,
             prev: dict[str, Any] | None) -> bytes:
    conf = dict(plugin)
    conf["name"] = conflist["name"]
    conf["cniVersion"] = conflist["cniVersion"]
    caps = plugin.get("capabilities") or {}
    runtime = {k: v for k, v in att.capability_args.items() if caps.get(k)}
    if runtime:
        conf["runtimeConfig"] = runtime
    if prev is not None:
        conf["prevResult"] = prev
    return json.dumps(conf).encode()


def _env(att: Attachment, path: list[str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.update(CNI_CONTAINERID=att.container_id, CNI_NETNS=att.netns, CNI_IFNAME=att.ifname,
               CNI_PATH=":".join(path),
               CNI_ARGS=";".join(f"{k}={v}" for k, v in att.args.items()))
    return env


def _cache_path(cache_dir: str, network: str, att: Attachment) -> str:
    # libcni's name and layout (<cache>/results/<net>-<id>-<ifname>), so its tools can read ours.
    return os.path.join(cache_dir, "results", f"{network}-{att.container_id}-{att.ifname}")


def _write_cache(cache_dir: str, conflist: dict[str, Any], att: Attachment, result: dict[str, Any]) -> None:
    record = {
        "kind": "cniCacheV1", "containerId": att.container_id, "ifName": att.ifname,
        "networkName": conflist["name"], "config": base64.b64encode(json.dumps(conflist).encode()).decode(),
        "cniArgs": [[k, v] for k, v in att.args.items()], "capabilityArgs": att.capability_args, "result": result,
    }
    fileio.ensure_dir(os.path.join(cache_dir, "results"))
    fileio.write_atomic(_cache_path(cache_dir, conflist["name"], att), json.dumps(record).encode(), mode=0o600)


def _validate(conflist: dict[str, Any]) -> None:
    versions.require_supported(conflist.get("cniVersion"))
    if not isinstance(conflist.get("plugins"), list) or not conflist["plugins"]:
        raise errors.CNIError(errors.INVALID_CONFIG, "conflist has no plugins")


def add(conflist: dict[str, Any], att: Attachment, path: list[str], cache_dir: str = DEFAULT_CACHE_DIR,
        executor: executors.Executor | None = None) -> dict[str, Any]:
    """ADD every plugin in order; on failure, DEL those already added (in reverse)."""
    _validate(conflist)
    env = _env(att, path)
    prev: dict[str, Any] | None = None

    def take_back(plugin: dict[str, Any]) -> None:
        # With the result so far (read when undoing), as a DEL of the whole list gets the cached one.
        delegate.invoke(plugin["type"], "DEL", env, _netconf(conflist, plugin, att, prev), path, executor)

    with Rollback() as undo:
        for plugin in conflist["plugins"]:
            res = delegate.invoke(plugin["type"], "ADD", env, _netconf(conflist, plugin, att, prev), path, executor)
            assert res is not None
            prev = results.encode(res, conflist["cniVersion"])
            undo.push(take_back, plugin)
    assert prev is not None
    _write_cache(cache_dir, conflist, att, prev)
    return prev


def _cached(conflist: dict[str, Any], att: Attachment, cache_dir: str) -> dict[str, Any] | None:
    try:
        with open(_cache_path(cache_dir, conflist["name"], att), encoding="utf-8") as f:
            cached = json.load(f)
    except (OSError, ValueError):
        return None
    result = cached.get("result") if isinstance(cached, dict) else None
    return result if isinstance(result, dict) else None


def cached_attachments(cache_dir: str, network: str) -> list[dict[str, str]]:
    """{containerID, ifname} of every cached attachment of ``network`` (what GC must keep)."""
    out = []
    for path in glob.glob(os.path.join(cache_dir, "results", f"{glob.escape(network)}-*")):
        try:
            with open(path, encoding="utf-8") as f:
                rec = json.load(f)
            if rec.get("networkName") == network:
                out.append({"containerID": rec["containerId"], "ifname": rec["ifName"]})
        except (OSError, ValueError, KeyError, AttributeError):
            continue
    return out


def status(conflist: dict[str, Any], path: list[str], executor: executors.Executor | None = None) -> None:
    """STATUS every plugin (spec 1.1.0); the first that is not ready raises."""
    _validate(conflist)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env["CNI_PATH"] = ":".join(path)
    for plugin in conflist["plugins"]:
        conf = dict(plugin, name=conflist["name"], cniVersion=conflist["cniVersion"])
        delegate.invoke(plugin["type"], "STATUS", env, json.dumps(conf).encode(), path, executor)


def delete(conflist: dict[str, Any], att: Attachment, path: list[str], cache_dir: str = DEFAULT_CACHE_DIR,
           executor: executors.Executor | None = None) -> None:
    """DEL every plugin in reverse order with the cached result; then forget the cache."""
    _validate(conflist)
    env = _env(att, path)
    prev = _cached(conflist, att, cache_dir)
    for plugin in reversed(conflist["plugins"]):
        delegate.invoke(plugin["type"], "DEL", env, _netconf(conflist, plugin, att, prev), path, executor)
    try:
        os.unlink(_cache_path(cache_dir, conflist["name"], att))
    except FileNotFoundError:
        pass


def check(conflist: dict[str, Any], att: Attachment, path: list[str], cache_dir: str = DEFAULT_CACHE_DIR,
          executor: executors.Executor | None = None) -> None:
    """CHECK every plugin in order with the cached result."""
    _validate(conflist)
    prev = _cached(conflist, att, cache_dir)
    if prev is None:
        raise errors.CNIError(errors.UNKNOWN_CONTAINER, "no cached result for the attachment",
                              f"{conflist['name']}/{att.container_id}/{att.ifname}")
    env = _env(att, path)
    for plugin in conflist["plugins"]:
        delegate.invoke(plugin["type"], "CHECK", env, _netconf(conflist, plugin, att, prev), path, executor)


def gc(conflist: dict[str, Any], valid: list[dict[str, str]], path: list[str],
       executor: executors.Executor | None = None) -> None:
    """GC every plugin (spec 1.1.0): everything not in ``valid`` ({containerID, ifname}) may go."""
    _validate(conflist)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env["CNI_PATH"] = ":".join(path)
    for plugin in conflist["plugins"]:
        conf = dict(plugin, name=conflist["name"], cniVersion=conflist["cniVersion"])
        conf["cni.dev/valid-attachments"] = valid
        delegate.invoke(plugin["type"], "GC", env, json.dumps(conf).encode(), path, executor)
