"""What /proc says about a process: its start time, which tells a live process from a reused PID.

A PID alone names a process only while it lives: once it is reaped the kernel hands the number to
the next process.  The start time (field 22 of /proc/PID/stat, clock ticks since boot) never
repeats for one PID, so ``(pid, start time)`` recorded once recognises the same process later.
"""

from __future__ import annotations


def start_time(pid: int) -> str | None:
    """The start time of ``pid``, or None when it is gone or dead (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces and ")": split after the last.
    fields = stat[stat.rfind(b")") + 1:].split()
    if len(fields) < 20 or fields[0] in (b"Z", b"X"):  # dead, not yet reaped: as good as gone
        return None
    return fields[19].decode("ascii", errors="replace")  # field 22 of the whole line
