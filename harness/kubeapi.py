"""A stand-in for the Kubernetes API server, which cannot run here (no kube-apiserver nor etcd on
this machine, nothing can be pulled): an HTTP server answering what ``netkit node``'s API source asks,
``GET /api/v1/nodes`` (a NodeList) and ``GET /api/v1/nodes?watch=true`` (watch events, one JSON object
a line, as the real server streams them), with the Node objects' real JSON shape.  A test changes the
nodes (``put``, ``delete``: the open watches get the events), drops the open watches (``drop``), or
makes the next requests fail (``fail_next``), or forgets the history (``compact``: a watch from an older
version gets 410 Gone, as after etcd's compaction).  A watch asked for bookmarks ends with one (the
current version), as the real server sends one before a watch's timeout.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


def node_object(name: str, internal_ip: str, pod_cidrs: list[str]) -> dict[str, Any]:
    """A Node as the API serves it (the fields netkit reads, and a few it does not)."""
    spec: dict[str, Any] = {"providerID": f"stand-in://{name}"}
    if pod_cidrs:
        spec.update(podCIDR=pod_cidrs[0], podCIDRs=pod_cidrs)
    return {"kind": "Node", "apiVersion": "v1",
            "metadata": {"name": name, "uid": f"uid-{name}", "labels": {"kubernetes.io/hostname": name}},
            "spec": spec,
            "status": {"addresses": [{"type": "InternalIP", "address": internal_ip},
                                     {"type": "Hostname", "address": name}]}}


class StandInApi:
    """The cluster's nodes and the watches open on them."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.nodes: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []  # every event so far; a watch sends those after its version
        self.version = 1
        self.generation = 0  # bumped by drop(): a watch of an older generation ends at once
        self.failures = 0  # the next N requests get HTTP 500
        self.oldest = 0  # a watch from a version older than this gets 410 Gone (compact())
        self.bookmarks = True  # honour allowWatchBookmarks
        self.requests: list[str] = []

    def _event(self, kind: str, obj: dict[str, Any]) -> None:
        self.version += 1
        obj = json.loads(json.dumps(obj))
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.events.append({"type": kind, "object": obj})
        self.cond.notify_all()

    def put(self, obj: dict[str, Any]) -> None:
        """Add or change a node (ADDED or MODIFIED to the watches)."""
        with self.cond:
            kind = "MODIFIED" if obj["metadata"]["name"] in self.nodes else "ADDED"
            self.nodes[obj["metadata"]["name"]] = obj
            self._event(kind, obj)

    def delete(self, name: str) -> None:
        """Remove a node (DELETED to the watches)."""
        with self.cond:
            self._event("DELETED", self.nodes.pop(name))

    def advance(self) -> None:
        """The version moves on without a Node event (another object changed: versions are cluster-wide)."""
        with self.cond:
            self.version += 1

    def compact(self) -> None:
        """``advance``, and the history before is forgotten: a watch from an older version gets 410 Gone."""
        with self.cond:
            self.version += 1
            self.oldest = self.version

    def lists(self) -> list[str]:
        """The list requests so far (not the watches)."""
        return [r for r in self.requests if "watch=true" not in r]

    def watches(self) -> list[str]:
        """The watch requests so far."""
        return [r for r in self.requests if "watch=true" in r]

    def drop(self, fail_next: int = 0) -> None:
        """End every open watch abruptly; the next ``fail_next`` requests fail with HTTP 500."""
        with self.cond:
            self.generation += 1
            self.failures = fail_next
            self.cond.notify_all()


def _handler(api: StandInApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # As the real server: a watch is a chunked response, an event a chunk, sent as it happens.
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            url = urlparse(self.path)
            query = parse_qs(url.query)
            api.requests.append(self.path)
            with api.cond:
                failing = api.failures > 0
                api.failures -= failing
            if failing:
                self._send(500, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                 "message": "stand-in failure", "reason": "InternalError", "code": 500})
                return
            if url.path != "/api/v1/nodes":
                self._send(404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404})
                return
            if query.get("watch") == ["true"]:
                self._watch(float(query.get("timeoutSeconds", ["60"])[0]), query.get("resourceVersion", [""])[0],
                            api.bookmarks and query.get("allowWatchBookmarks") == ["true"])
                return
            with api.cond:
                body = {"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": str(api.version)},
                        "items": list(api.nodes.values())}
            self._send(200, body)

        def _chunk(self, event: dict[str, Any]) -> None:
            line = json.dumps(event).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))

        def _watch(self, timeout: float, since: str, bookmarks: bool) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            with api.cond:
                # As the real server: the events after the resource version asked for (the list's),
                # so a change made between the list and this request is not lost; none: from now.
                after = int(since) if since.isdigit() and since != "0" else api.version
                expired = after < api.oldest
                sent = sum(int(e["object"]["metadata"]["resourceVersion"]) <= after for e in api.events)
                generation = api.generation
            if expired:  # as the real server: 200, then an ERROR event, then the end
                self._chunk({"type": "ERROR", "object": {
                    "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410,
                    "message": f"too old resource version: {after} ({api.oldest})"}})
                self.wfile.write(b"0\r\n\r\n")
                return
            deadline = threading.Event()
            timer = threading.Timer(timeout, deadline.set)
            timer.start()
            try:
                while not deadline.is_set():
                    with api.cond:
                        api.cond.wait_for(lambda: len(api.events) > sent or api.generation != generation,
                                          timeout=0.1)
                        if api.generation != generation:
                            return  # dropped: the connection closes mid-response (no last chunk)
                        pending, sent = api.events[sent:], len(api.events)
                    for event in pending:
                        self._chunk(event)
                    self.wfile.flush()
                if bookmarks:
                    with api.cond:  # the events not sent yet first: the bookmark's version covers them
                        pending, version = api.events[sent:], str(api.version)
                    for event in pending:
                        self._chunk(event)
                    self._chunk({"type": "BOOKMARK", "object": {"kind": "Node", "apiVersion": "v1",
                                                                "metadata": {"resourceVersion": version}}})
                self.wfile.write(b"0\r\n\r\n")  # the timeout: the watch ends properly
            except OSError:
                return
            finally:
                timer.cancel()

    return Handler


class Server:
    """The stand-in serving on ``listener`` (a bound socket: the test makes it inside a namespace)."""

    def __init__(self, api: StandInApi, listener: socket.socket) -> None:
        self.httpd = ThreadingHTTPServer(listener.getsockname()[:2], _handler(api), bind_and_activate=False)
        self.httpd.socket.close()
        self.httpd.socket = listener
        self.httpd.daemon_threads = True
        listener.listen(16)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        """Stop serving and close the socket (watch threads end with their connections)."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def kubeconfig(url: str) -> str:
    """A kubeconfig (YAML is a superset of JSON) for the stand-in: no credentials, plain HTTP."""
    return json.dumps({"apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
                       "clusters": [{"name": "stand-in", "cluster": {"server": url}}],
                       "users": [{"name": "nobody", "user": {}}],
                       "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "nobody"}}]})
