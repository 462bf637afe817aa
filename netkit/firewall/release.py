"""Releasing netfilter netlink sockets off the request's path.

Closing a NETLINK_NETFILTER socket makes nf_tables flush its pending destroy work, which waits for
an RCU grace period whenever a commit (anyone's, any namespace) has just deleted something: 10-30
ms per socket on these machines, measured on libnftables contexts that committed and on the
generation reads around a commit (``nftgen``), ~14 ms of every agent DEL before this.  Nothing
waits for the release, so one background thread does it.  A plugin process exits right after its
answer, and the kernel closes whatever is still open then.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable

_pending: "queue.SimpleQueue[Callable[[], object]] | None" = None
_lock = threading.Lock()


def _run(pending: "queue.SimpleQueue[Callable[[], object]]") -> None:
    from netkit.net import netns

    netns.join_process_namespace()  # started from a request's thread, maybe inside its caller's namespace
    while True:
        release = pending.get()
        try:
            release()
        except OSError:
            pass  # a socket that cannot be closed is closed at exit


def later(release: Callable[[], object]) -> None:
    """Call ``release`` (a socket's close, a context's free) on the background thread."""
    global _pending
    with _lock:
        if _pending is None:
            _pending = queue.SimpleQueue()
            threading.Thread(target=_run, args=(_pending,), name="nfnl-release", daemon=True).start()
    _pending.put(release)
