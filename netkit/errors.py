"""One exception type for every failure netkit reports, carrying a CNI error code.

Raised anywhere; turned into CNI error JSON by the protocol handler and into one readable line by
the CLI.  Codes below 100 are the CNI spec's; 100 and up are netkit's own (documented in
docs/errors.md).
"""

from __future__ import annotations

# How every one-line failure the `netkit` command prints begins (the CLI's, and a container
# process's own before it execs CMD); a caller reading a netkit child's stderr strips it.
LINE_PREFIX = "netkit: error: "

# CNI spec codes.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
NOT_AVAILABLE_DEGRADED = 51

# netkit's own codes.
INTERNAL = 100
KERNEL = 101
NAME_CONFLICT = 102
POOL_EXHAUSTED = 103
ADDRESS_UNAVAILABLE = 104
DELEGATE_FAILED = 105
CHECK_FAILED = 106
PORT_ALLOCATED = 107
FORWARD_BLOCKED = 108


class CNIError(Exception):
    """A failure with a CNI error code, a short message and optional details."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_dict(self, cni_version: str) -> dict[str, object]:
        """The spec's error object."""
        out: dict[str, object] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out

    def __str__(self) -> str:
        return f"{self.msg}: {self.details}" if self.details else self.msg
