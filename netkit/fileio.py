"""Small file primitives shared by every on-disk store: atomic writes and an exclusive lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import Iterator

from netkit import errors


def write_atomic(path: str, data: bytes, mode: int = 0o644, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see the old content or the new, never a part.

    ``durable`` also fsyncs before the rename, so the content survives a power loss; skip it for
    data a reboot makes worthless anyway.
    """
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise errors.CNIError(errors.IO_FAILURE, f"failed to write {path}", str(exc)) from None


def ensure_dir(path: str) -> None:
    """Create ``path`` (mode 0755) if missing, reporting failure as the spec's I/O error."""
    try:
        os.makedirs(path, mode=0o755, exist_ok=True)
    except OSError as exc:
        raise errors.CNIError(errors.IO_FAILURE, f"failed to create directory {path}", str(exc)) from None


@contextlib.contextmanager
def locked(path: str) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if missing) for the duration of the block."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise errors.CNIError(errors.IO_FAILURE, f"failed to open lock {path}", str(exc)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
