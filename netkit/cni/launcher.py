"""The entry point that plugin executables written before ``netkit.launch`` existed import.

``netkit cni install`` writes launchers that import ``netkit.launch.executable``; ones written by
an older netkit import ``main`` from here.  Without this door such a launcher, left in
/opt/cni/bin after an upgrade, would answer every runtime with a Python traceback until the next
``netkit cni install``.  Like ``netkit/__main__.py`` it is an entry point, not part of the CNI core:
tests/test_layers.py counts it with ``launch``.
"""

from netkit.launch.executable import main

__all__ = ["main"]
