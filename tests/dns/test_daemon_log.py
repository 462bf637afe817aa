"""The daemon's log (its stderr, a file no one rotates in the records directory) stays small."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from netkit.dns import server


def test_tracebacks_are_rate_limited_and_the_log_starts_again_past_its_cap(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / ".daemon.log"
    log.write_bytes(b"old line\n" * (server.LOG_MAX // 9 + 1))  # past the cap already
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)  # as control.start opens it
    with os.fdopen(fd, "w") as stderr:
        monkeypatch.setattr(sys, "stderr", stderr)
        daemon = server.Server.__new__(server.Server)  # the logging part only: no sockets
        daemon._tracebacks = []
        for _ in range(3 * server._TRACEBACKS_PER_MINUTE):
            try:
                raise RuntimeError("a query that broke the loop")
            except RuntimeError:
                daemon._log_exception()
    text = log.read_text()
    assert "old line" not in text                      # started again
    assert text.count("Traceback") == server._TRACEBACKS_PER_MINUTE
    assert len(text) < server.LOG_MAX
