"""Small file primitives shared by every on-disk store: atomic writes and an exclusive lock."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import threading
from typing import Iterator

from netkit import errors


def _refuse_nul(path: str) -> None:
    # os.* raise ValueError, not OSError, for a NUL in a path; such a path can only come from a
    # config, so it is reported as one (code 7) rather than escaping as an internal error.
    if "\0" in path:
        raise errors.CNIError(errors.INVALID_CONFIG, "invalid path: contains a NUL character", repr(path)[:300])


def write_atomic(path: str, data: bytes, mode: int = 0o644, durable: bool = True, tmp_dir: str = "") -> None:
    """Write ``data`` to ``path`` so that readers see the old content or the new, never a part.

    ``durable`` also fsyncs before the rename, so the content survives a power loss; skip it for
    data a reboot makes worthless anyway.  ``tmp_dir`` (same filesystem) holds the temp file
    instead of ``path``'s directory, so a writer's orphans are found without listing that directory.
    """
    _refuse_nul(path)
    # The thread too: the agent serves many requests in one process, and two writers sharing a
    # temp file would rename each other's half-written content into place.
    tmp = f"{os.path.join(tmp_dir, os.path.basename(path)) if tmp_dir else path}.tmp.{os.getpid()}.{threading.get_native_id()}"
    try:
        # A fresh file, so its mode is ``mode`` (less the umask), never a stale temp file's.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
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


def ensure_dir(path: str, mode: int = 0o755) -> None:
    """Create ``path`` and any missing parents with ``mode`` (less the umask), reporting failure as
    the spec's I/O error.

    os.makedirs gives parents 0777 minus the umask: world-writable under a service's umask 0, where
    anyone could then plant leases or state.
    """
    _refuse_nul(path)
    missing = []
    head = os.path.abspath(path)
    while not os.path.isdir(head):
        missing.append(head)
        parent = os.path.dirname(head)
        if parent == head:
            break
        head = parent
    try:
        for d in reversed(missing):
            try:
                os.mkdir(d, mode)
            except FileExistsError:  # made concurrently by another writer
                if not os.path.isdir(d):
                    raise
    except OSError as exc:
        raise errors.CNIError(errors.IO_FAILURE, f"failed to create directory {path}", str(exc)) from None


@contextlib.contextmanager
def locked(path: str) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if missing) for the duration of the block."""
    _refuse_nul(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise errors.CNIError(errors.IO_FAILURE, f"failed to open lock {path}", str(exc)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_regular(path: str, limit: int = 65536) -> bytes:
    """Up to ``limit`` bytes of the regular file ``path``; OSError for anything else.

    Never blocks and never follows a symlink: a FIFO or a device planted where a state file is
    expected would otherwise hang (or act on) every reader.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        return os.read(fd, limit)
    finally:
        os.close(fd)
