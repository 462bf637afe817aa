"""Who asked for a lease: an IPAM delegate must not reserve for a plugin that has already died.

netkit-bridge execs the IPAM plugin as a child.  If the bridge is killed (a runtime's timeout, the
OOM killer) while the child is still starting, the runtime's DEL can run before the orphaned child
takes the lease store's lock; the child would then write a lease nobody will ever release.  So the
bridge names itself in the delegate's environment (pid and start time, which survives no pid
reuse), and IPAM ADD checks, under the store's lock, that it is still alive.  Race-free: a DEL
issued after the requester's death either took the lock before the check (the check then sees
the death) or after the lease was written (and releases it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from netkit.procinfo import start_time

ENV = "NETKIT_IPAM_REQUESTER"


def token() -> str:
    """``pid:start-time`` of this process, for the delegate's environment."""
    pid = os.getpid()
    return f"{pid}:{start_time(pid)}"


def gone(env: Mapping[str, str]) -> bool:
    """True when the request names a requester that no longer runs (absent or malformed: False)."""
    pid, _, started = env.get(ENV, "").partition(":")
    if not pid.isdigit() or not started:
        return False
    return start_time(int(pid)) != started
