"""What the tests and the benchmarks share: sandbox host namespaces, the agent process, the podman
sandbox, process scans and the benchmarks' skeleton, each written once.

Not shipped (pyproject packages only ``netkit*``): tests import it as ``harness.X``, and the scripts
in bench/ put the repository root on ``sys.path`` first.
"""


class HarnessError(RuntimeError):
    """Setting up or tearing down a sandbox, agent or benchmark failed."""
