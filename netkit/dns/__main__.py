"""``python -m netkit.dns DATA_DIR READY_FD``: the resolver daemon of a records directory.

Started by ``control.start`` in a session of its own; it forks once, so the daemon is nobody's
child to reap (a plugin running in the agent would otherwise leave the agent a zombie), and writes
its first answer on READY_FD once it listens (control.reload_answer).
"""

from __future__ import annotations

import os
import sys

from netkit.dns import server


def _main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m netkit.dns DATA_DIR READY_FD", file=sys.stderr)
        return 2
    if os.fork() != 0:
        os._exit(0)
    return server.main(argv[0], int(argv[1]))


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
