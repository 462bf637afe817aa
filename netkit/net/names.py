"""Names derived from the request, so DEL and GC find objects with nothing but the request."""

from __future__ import annotations

try:
    # hashlib's own fallback, built into the interpreter: hashlib itself loads OpenSSL, ~2-8 ms of
    # every plugin exec that names a veth, a chain or a lease hint.  The same digests.
    from _sha256 import sha256
except ImportError:
    try:
        from _sha2 import sha256  # its name from Python 3.12 on
    except ImportError:  # an interpreter built without it
        from hashlib import sha256

HOST_VETH_PREFIX = "nk"


def attachment_hash(network: str, container_id: str, ifname: str, length: int = 12) -> str:
    """A short stable hex digest of one attachment."""
    return sha256(f"{network}\0{container_id}\0{ifname}".encode()).hexdigest()[:length]


def host_veth(network: str, container_id: str, ifname: str) -> str:
    """Host-side veth name of an attachment: ``nk`` + 12 hex digits (14 bytes, under IFNAMSIZ)."""
    return HOST_VETH_PREFIX + attachment_hash(network, container_id, ifname)


def owner_alias(network: str, container_id: str, ifname: str) -> str:
    """The ifalias written on a host veth: who it belongs to, readable with ``ip link``."""
    return f"netkit:{network}:{container_id}:{ifname}"


def alias_network(alias: str | None) -> str | None:
    """The network named in an owner alias, or None when the link is not netkit's."""
    if not alias or not alias.startswith("netkit:"):
        return None
    return alias[len("netkit:"):].rsplit(":", 2)[0]
