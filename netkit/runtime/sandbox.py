"""Where a container's network namespace can be reached from this process.

The runtime keeps a bridge or none container's namespace alive with a bind mount under its root
(``<root>/netns/<id>``, Docker's SandboxKey).  A mount belongs to one mount namespace: under
``ip netns exec``, which gives every command a private mount namespace of its own (slave to the
machine's, so nothing made inside propagates out), the mount is seen only by that command and by
the supervisor and container it leaves running; every later command finds a plain empty file.  A
recorded path that is not a namespace here therefore does not mean the namespace is gone: while the
container runs, its process holds it, and ``/proc/<pid>/ns/net`` reaches it from any mount
namespace — the path Docker and podman themselves hand the kernel for ``--network container:NAME``.
"""

from __future__ import annotations

from netkit.net import netns
from netkit.runtime import state
from netkit.runtime.state import Container

OWN_NAMESPACE = ("bridge", "none")  # the kinds whose namespace the runtime creates and binds


def reachable(ctr: Container) -> str:
    """The container's network namespace as a path this process can open; "" when there is none.

    The bind mount when it is visible here; otherwise, while the container runs, its process's
    namespace (a host-mode container's process is in the host's, a joiner's in its owner's);
    otherwise "": the namespace is gone, or held only where this process cannot see it.
    """
    own = ctr.netns if ctr.net_kind in OWN_NAMESPACE else ""
    if own and netns.exists(own):
        return own
    if state.alive(ctr):  # checks the process's start time too: never a reused PID
        return f"/proc/{ctr.pid}/ns/net"
    return ""
