"""Set-up shared by the test suite and the benchmarks: podman sandbox, process scans, benchmark skeleton.

Imported as ``harness.X`` from tests/ and from bench/ scripts (which put the repository root on sys.path);
not part of the netkit wheel.
"""


class HarnessError(RuntimeError):
    """A set-up or clean-up command of the harness failed."""
