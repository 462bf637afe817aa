"""Entering a network namespace: one context manager, always restoring the thread's own.

setns(2) acts on the calling thread only, so entering here never disturbs other threads; netlink
sockets opened inside the block belong to the entered namespace.  Python 3.11 has no os.setns, so
this uses libc through ctypes: ``setns_fd`` is netkit's one binding of it (the runtime and the agent
join namespaces through it too).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from typing import Iterator

from netkit import errors

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
SELF = "/proc/thread-self/ns/net"


def setns_fd(fd: int, nstype: int = CLONE_NEWNET) -> None:
    """Move this thread into the namespace open on ``fd`` (of kind ``nstype``); OSError if refused."""
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def setns(path: str, nstype: int = CLONE_NEWNET) -> None:
    """Move this thread into the namespace at ``path`` (of kind ``nstype``); OSError if refused."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns_fd(fd, nstype)
    except OSError as exc:
        raise OSError(exc.errno, f"setns {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def open_netns(path: str) -> int:
    """Open ``path`` as a network namespace; CNIError 3 if missing, 4 if it is not a netns.

    Checked before it is opened: opening a FIFO would block forever (an agent thread with it,
    holding the attachment's lock) and opening a device node can have effects of its own.
    """
    try:
        # Every namespace inode lives on the one nsfs superblock, so its device tells a namespace
        # (or a bind mount of one, as under /run/netns) from an ordinary file, FIFO or device.
        if os.stat(path).st_dev != os.stat(SELF).st_dev:
            raise errors.CNIError(errors.INVALID_ENV, "not a network namespace", path)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise errors.CNIError(errors.UNKNOWN_CONTAINER, "network namespace does not exist", path) from None
    except (OSError, ValueError) as exc:
        raise errors.CNIError(errors.INVALID_ENV, "failed to open network namespace", f"{path}: {exc}") from None
    if os.fstat(fd).st_dev != os.stat(SELF).st_dev:  # replaced between the stat and the open
        os.close(fd)
        raise errors.CNIError(errors.INVALID_ENV, "not a network namespace", path)
    return fd


def same_as_current(path: str) -> bool:
    """True when ``path`` is the namespace this thread is in (e.g. /proc/1/ns/net on the host)."""
    a, b = os.stat(path), os.stat(SELF)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _same(path: str, other: str) -> bool:
    try:
        a, b = os.stat(path), os.stat(other)
    except OSError:  # e.g. /proc/1/ns/net is not ours to look at: it cannot be the same then
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def require_other(path: str) -> None:
    """Raise unless ``path`` is a network namespace other than the current one and init's.

    The current one is the host of a container; init's (/proc/1/ns/net) is the machine's own,
    which matters when netkit itself runs in a namespace (labs, side-by-side roots).
    """
    os.close(open_netns(path))
    if same_as_current(path) or _same(path, "/proc/1/ns/net"):
        raise errors.CNIError(errors.INVALID_ENV, "CNI_NETNS is the host's own network namespace", path)


def exists(path: str) -> bool:
    """True when ``path`` can be entered as a network namespace."""
    try:
        os.close(open_netns(path))
    except errors.CNIError:
        return False
    return True


def join_process_namespace() -> None:
    """Move this thread into the process's own namespace (its main thread's).

    A thread starts in the namespace of the thread that created it; a long-lived helper thread
    started from inside a caller's namespace would keep that namespace alive.
    """
    setns("/proc/self/ns/net")  # /proc/self: the main thread


@contextlib.contextmanager
def entered(path: str) -> Iterator[None]:
    """Run the block inside the network namespace at ``path`` on this thread."""
    target = open_netns(path)
    own = os.open(SELF, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            setns_fd(target)
        except OSError as exc:
            raise errors.CNIError(errors.INVALID_ENV, "not a network namespace", f"{path}: {exc}") from None
        try:
            yield
        finally:
            setns_fd(own)
    finally:
        os.close(target)
        os.close(own)


_MS_BIND = 0x1000
_MNT_DETACH = 0x2
CLONE_NEWNS = 0x00020000


def create(path: str) -> None:
    """Make a new network namespace kept alive by a bind mount on ``path`` (as ``ip netns add``),
    with ``lo`` up, as every container expects.

    unshare(2) runs on a short-lived thread, so the caller's own namespace never changes.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444)
    os.close(fd)
    failure: list[BaseException] = []

    def worker() -> None:
        try:
            if _libc.unshare(CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
            if _libc.mount(b"/proc/thread-self/ns/net", path.encode(), None, _MS_BIND, None) != 0:
                raise OSError(ctypes.get_errno(), f"bind mount on {path}")
            from netkit.net import ifflags

            ifflags.set_up("lo")
        except BaseException as exc:  # noqa: BLE001 - reported to the caller below
            failure.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    if failure:
        with contextlib.suppress(OSError):
            os.unlink(path)
        exc = failure[0]
        raise errors.CNIError(errors.KERNEL, "failed to create a network namespace", str(exc)) from None


def remove(path: str) -> None:
    """Release the namespace bound on ``path`` and delete the file; already gone is fine."""
    _libc.umount2(path.encode(), _MNT_DETACH)  # EINVAL when nothing is mounted there: fine
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
