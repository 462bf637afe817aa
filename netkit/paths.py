"""Where netkit keeps its per-boot state: locks, the port index, the agent's socket, lab state.

Imports nothing: the plugin executable's cold path (``agent/protocol.py``, standard library only)
reads it too.
"""

RUN_DIR = "/run/netkit"  # tmpfs: what lives here is worthless after a reboot, and goes with it
