"""The Kubernetes API as the source of nodes: list, then watch, then list again (resync).

Through the official ``kubernetes`` client: in-cluster credentials (the DaemonSet's service account)
or a kubeconfig.  A thread keeps the current Node objects by name: a full list replaces them (so a
deletion missed while the watch was down is not missed for long), watch events change them one by
one, and every ``resync`` seconds the watch ends and the list is taken again.  A failure (API down,
a dropped watch, an expired resource version) is handed to the loop as one line and retried after
``retry`` seconds; the last good facts stay in force meanwhile.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from netkit.node import snapshot

_EXPIRED = 410  # the watch's resource version is too old: list again, not a failure


def _one_line(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None)
    if status is not None:
        return f"HTTP {status} {reason or ''}".strip()
    return " ".join(str(exc).split())[:300] or type(exc).__name__


class ApiSource:
    """The daemon's Source over the Kubernetes API (see the module docstring); ``start()`` first."""

    def __init__(self, kubeconfig: str | None = None, resync: float = 300.0, retry: float = 2.0) -> None:
        self.kubeconfig = kubeconfig
        self.resync = resync
        self.retry = retry
        self._lock = threading.Lock()
        self._nodes: dict[str, Any] = {}
        self._dirty = False
        self._error = ""
        self._phase = "list"  # what the thread is doing, for the failure's line
        self._stop = threading.Event()
        self.on_change: Callable[[], None] = lambda: None  # the loop's wake(): news are applied at once
        self._thread = threading.Thread(target=self._run, name="netkit-node-api", daemon=True)

    def start(self) -> None:
        """Start listing and watching in the background."""
        self._thread.start()

    def stop(self, wait: float = 0.0) -> None:
        """Stop after the current request (a watch returns within ``resync`` seconds at most);
        wait up to ``wait`` seconds for the thread to end."""
        self._stop.set()
        if wait and self._thread.is_alive():
            self._thread.join(wait)

    def poll(self) -> snapshot.Snapshot | None:
        """See ``daemon.Source.poll``: the nodes when they changed, SourceError on a failure."""
        with self._lock:
            if self._error:
                error, self._error = self._error, ""
                raise snapshot.SourceError(error)
            if not self._dirty:
                return None
            self._dirty = False
            objects = list(self._nodes.values())
        return snapshot.from_entries(objects)

    def _api(self) -> Any:
        from kubernetes import client, config

        if self.kubeconfig:
            api_client = config.new_client_from_config(config_file=self.kubeconfig)
        else:
            config.load_incluster_config()
            api_client = client.ApiClient()
        return client.CoreV1Api(api_client)

    def _set(self, name: str, obj: Any | None) -> None:
        with self._lock:
            if obj is None:
                self._nodes.pop(name, None)
            else:
                self._nodes[name] = obj
            self._dirty = True
        self.on_change()

    def _fail(self, line: str) -> None:
        with self._lock:
            self._error = line
        self.on_change()

    def _run(self) -> None:
        api = None
        while not self._stop.is_set():
            try:
                api = api or self._api()
                self._list_and_watch(api)
            except Exception as exc:  # noqa: BLE001 - whatever the client raises, the loop goes on
                if getattr(exc, "status", None) == _EXPIRED:
                    continue
                self._fail(f"Kubernetes API, {self._phase} of nodes: {_one_line(exc)}")
                self._stop.wait(self.retry)

    def _list_and_watch(self, api: Any) -> None:
        from kubernetes import watch

        self._phase = "list"
        resp = api.list_node(_preload_content=False, _request_timeout=30)
        body = json.loads(resp.data)
        nodes = {(o.get("metadata") or {}).get("name"): o for o in body.get("items") or []}
        with self._lock:
            self._nodes = nodes
            self._dirty = True
        self.on_change()
        watcher = watch.Watch()
        began = time.monotonic()
        self._phase = "watch"
        # timeout_seconds: the server ends the watch then, which is the periodic resync (a new list).
        for event in watcher.stream(api.list_node, resource_version=body["metadata"]["resourceVersion"],
                                    timeout_seconds=max(1, int(self.resync)), allow_watch_bookmarks=True,
                                    _request_timeout=self.resync + 30):
            if self._stop.is_set():
                watcher.stop()
                break
            kind, obj = event.get("type"), event.get("raw_object") or {}
            name = (obj.get("metadata") or {}).get("name")
            if kind in ("ADDED", "MODIFIED") and name:
                self._set(name, obj)
            elif kind == "DELETED" and name:
                self._set(name, None)
        lasted = time.monotonic() - began
        if not self._stop.is_set() and lasted < self.resync * 0.9:
            # Ended by the server or the network before its time: worth one line, then a new list.
            self._fail(f"Kubernetes API, watch of nodes: ended after {lasted:.1f} s, listing again")
