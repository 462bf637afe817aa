"""The Kubernetes API as the source of nodes: list once, then watch from where the last watch ended.

Through the official ``kubernetes`` client: in-cluster credentials (the DaemonSet's service account)
or a kubeconfig, loaded once by ``load_config`` (a bad configuration is the CLI's error, not a loop of
log lines).  As an informer does, a thread lists the Nodes (``resourceVersion=0``: served from the
API server's cache, not etcd), then watches from the list's resource version; a watch the server ends
at its timeout is opened again from the last version seen (events and bookmarks carry it), so a
healthy cluster is listed once, not every few seconds by every node.  Only an expired version (410
Gone) or a failure lists again.  A failure (API down, a dropped watch) is handed to the loop as one
line, and the next attempt waits longer each time (``retry`` doubling to ``retry_max``, with jitter:
a thousand nodes do not come back in step); the last good facts stay in force meanwhile.

Each Node is parsed when it arrives and the loop is told only when what netkit uses changed (name,
InternalIPs, podCIDRs): a heartbeat every few seconds per node costs one parse, not an apply.
"""

from __future__ import annotations

import collections
import json
import random
import socket
import threading
from collections.abc import Callable
from typing import Any

from netkit.node import model, snapshot

_EXPIRED = 410  # the resource version is too old (compacted): list again, not a failure
_ERRORS_KEPT = 8  # failures not yet polled; older ones are dropped first (one line each is plenty)


class ConfigError(ValueError):
    """No usable API configuration (no in-cluster environment, an unreadable kubeconfig)."""


class _Expired(Exception):
    """The watch's resource version is gone: list again."""


def load_config(kubeconfig: str | None) -> Any:
    """The client Configuration from ``kubeconfig``, or in-cluster when None; ConfigError in one line.

    Retries are off: the client's own (three per request, each a urllib3 warning) would hide the
    failure behind a flood of lines; this source backs off itself and says it once.
    """
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration,
                                    persist_config=False)
        else:
            config.load_incluster_config(client_configuration=configuration)
    except Exception as exc:  # noqa: BLE001 - the loaders raise their own, OSError, YAML errors...
        where = f"kubeconfig {kubeconfig}" if kubeconfig else "in-cluster configuration (give --kubeconfig?)"
        raise ConfigError(f"Kubernetes API, {where}: {_one_line(exc)}") from None
    configuration.retries = False
    return configuration


def _one_line(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None)
    if status:
        return f"HTTP {status} {reason or ''}".strip()
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _metadata(obj: Any, key: str) -> str | None:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    value = meta.get(key) if isinstance(meta, dict) else None
    return value if isinstance(value, str) and value else None


class ApiSource:
    """The daemon's Source over the Kubernetes API (see the module docstring); ``start()`` first.

    ``configuration`` is ``load_config``'s; ``watch_timeout`` how long the server keeps a watch open
    (jittered up to twice that); ``retry`` the first wait after a failure, doubling to ``retry_max``.
    """

    def __init__(self, configuration: Any, watch_timeout: float = 300.0, retry: float = 1.0,
                 retry_max: float = 30.0) -> None:
        self.configuration = configuration
        self.watch_timeout = watch_timeout
        self.retry = retry
        self.retry_max = retry_max
        self._lock = threading.Lock()
        self._nodes: dict[str, model.Node | str] = {}  # by name: the parsed node or why it is refused
        self._dirty = False
        self._errors: collections.deque[str] = collections.deque(maxlen=_ERRORS_KEPT)
        self._phase = "list"  # what the thread is doing, for the failure's line
        self._response: Any = None  # the open watch, so stop() can end it
        self._heard = False  # the current watch delivered something (the API worked again)
        self._stop = threading.Event()
        self.on_change: Callable[[], None] = lambda: None  # the loop's wake(): news are applied at once
        self._thread = threading.Thread(target=self._run, name="netkit-node-api", daemon=True)

    def start(self) -> None:
        """Start listing and watching in the background."""
        self._thread.start()

    def stop(self, wait: float = 0.0) -> None:
        """Stop, ending an open watch; wait up to ``wait`` seconds for the thread to end."""
        self._stop.set()
        sock = getattr(getattr(self._response, "connection", None), "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked reading the watch
            except OSError:
                pass
        if wait and self._thread.is_alive():
            self._thread.join(wait)

    def poll(self) -> snapshot.Snapshot | None:
        """See ``daemon.Source.poll``: the nodes when they changed; SourceError with the oldest
        failure not yet told (each failure is told once, none overwritten by the next)."""
        with self._lock:
            if self._errors:
                raise snapshot.SourceError(self._errors.popleft())
            if not self._dirty:
                return None
            self._dirty = False
            results = [self._nodes[name] for name in sorted(self._nodes)]
        return snapshot.from_parsed(results)

    def _replace(self, nodes: dict[str, model.Node | str]) -> None:
        with self._lock:
            changed = nodes != self._nodes
            self._nodes = nodes
            self._dirty |= changed
        if changed:
            self.on_change()

    def _set(self, name: str, parsed: model.Node | str | None) -> None:
        with self._lock:
            if parsed == self._nodes.get(name):
                return  # a heartbeat or a label: nothing netkit uses
            if parsed is None:
                del self._nodes[name]
            else:
                self._nodes[name] = parsed
            self._dirty = True
        self.on_change()

    def _fail(self, line: str) -> None:
        with self._lock:
            self._errors.append(line)
        self.on_change()

    def _run(self) -> None:
        from kubernetes import client

        api = client.CoreV1Api(client.ApiClient(self.configuration))
        version: str | None = None  # where the next watch starts; None: list first
        delay = self.retry
        while not self._stop.is_set():
            self._heard = False
            try:
                if version is None:
                    version = self._list(api)
                version = self._watch(api, version)
                delay = self.retry  # a watch ran its course: the API is healthy
            except _Expired:
                version = None
            except Exception as exc:  # noqa: BLE001 - whatever the client raises, the loop goes on
                if self._stop.is_set():
                    break
                if self._heard:
                    delay = self.retry  # the watch worked a while: a new outage starts from the short wait
                if getattr(exc, "status", None) == _EXPIRED:
                    version = None
                    continue
                self._fail(f"Kubernetes API, {self._phase} of nodes: {_one_line(exc)}")
                version = None  # what happened meanwhile is unknown: list again
                self._stop.wait(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self.retry_max)

    def _list(self, api: Any) -> str:
        self._phase = "list"
        # resourceVersion 0: any recent state will do (the API server's cache, no read of etcd).
        resp = api.list_node(resource_version="0", _preload_content=False, _request_timeout=60)
        body = json.loads(resp.data)
        items = body.get("items") if isinstance(body, dict) else None
        nodes: dict[str, model.Node | str] = {}
        for i, obj in enumerate(items if isinstance(items, list) else []):
            # An object without a usable name still gets a line (under a key no Node can have).
            nodes[_metadata(obj, "name") or f"#{i}"] = snapshot.parse(obj)
        self._replace(nodes)
        version = _metadata(body, "resourceVersion")
        if version is None:
            raise ValueError("the node list has no resourceVersion")
        return version

    def _watch(self, api: Any, version: str) -> str:
        """One watch from ``version`` until the server ends it; the last version seen.

        The lines are read here, not through ``kubernetes.watch``: its models are not needed (a
        V1Node per heartbeat), and with ``deserialize=False`` its handling of an ERROR event fails.
        """
        self._phase = "watch"
        timeout = int(self.watch_timeout * random.uniform(1.0, 2.0)) or 1
        self._response = resp = api.list_node(
            watch=True, resource_version=version, allow_watch_bookmarks=True, timeout_seconds=timeout,
            _preload_content=False, _request_timeout=timeout + 30)
        try:
            for line in resp:
                if self._stop.is_set():
                    break
                self._heard = True
                if line.strip():
                    version = self._event(json.loads(line), version)
        finally:
            self._response = None
            resp.close()  # not back to the pool: the response may be cut off mid-event
            resp.release_conn()
        return version

    def _event(self, event: Any, version: str) -> str:
        kind = event.get("type") if isinstance(event, dict) else None
        obj = event.get("object") if isinstance(event, dict) else None
        if kind == "ERROR":
            code = obj.get("code") if isinstance(obj, dict) else None
            if code == _EXPIRED:
                raise _Expired()
            message = obj.get("message") if isinstance(obj, dict) else obj
            raise ValueError(f"watch error {code}: {message}")
        name = _metadata(obj, "name")
        if kind in ("ADDED", "MODIFIED") and name:
            self._set(name, snapshot.parse(obj))
        elif kind == "DELETED" and name:
            self._set(name, None)
        # BOOKMARK: only the version, so the next watch starts there (no 410 after a quiet spell).
        return _metadata(obj, "resourceVersion") or version
