"""A fake executor: plugins that answer from a table, so delegation and lists run without exec."""

from __future__ import annotations

import json
import os
from typing import Any

from netkit import errors
from netkit.cni import executor as executors


class FakeExec(executors.Executor):
    """An executor that runs nothing: every plugin is found in a fake directory and answers from
    ``answers`` (type -> {command: (stdout, exit status)}); each call is recorded."""

    def __init__(self, answers: dict[str, dict[str, tuple[bytes, int]]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def find(self, plugin_type: str, path: list[str]) -> str:
        if plugin_type not in self.answers:
            raise errors.CNIError(errors.DELEGATE_FAILED, "not found", plugin_type)
        return f"/fake/{plugin_type}"

    def run(self, exe: str, env: Any, stdin: bytes) -> tuple[bytes, bytes, int]:
        name = os.path.basename(exe)
        self.calls.append((name, env["CNI_COMMAND"], json.loads(stdin)))
        out, code = self.answers[name].get(env["CNI_COMMAND"], (b"", 0))
        return out, b"", code


def result_of(address: str) -> bytes:
    """A plugin's ADD answer giving ``address``."""
    return json.dumps({"cniVersion": "1.0.0", "ips": [{"address": address}]}).encode()
