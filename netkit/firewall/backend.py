"""Choosing the firewall backend: the one the host's own ``iptables`` uses, unless told otherwise.

Writing both on one host is never right: a legacy rule and an nft rule for the same port shadow
each other silently (measured: whichever NAT hook registered first wins the whole connection).
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Protocol

from netkit import errors
from netkit.firewall.model import NetworkRules, RuleGroup

ENV_OVERRIDE = "NETKIT_FIREWALL_BACKEND"
CONFIG_KEY = "firewallBackend"
NAMES = ("nftables", "iptables")


class Backend(Protocol):
    """What every firewall backend provides."""

    name: str

    def apply(self, group: RuleGroup) -> None:
        """Install or replace the group atomically."""

    def apply_network(self, net: NetworkRules) -> None:
        """Install or replace the network's isolation and icc rules."""

    def remove_chains(self, chains: set[str]) -> None:
        """Remove group chains and the jumps to them; absent ones are fine."""

    def chains(self) -> set[str]:
        """Every group chain present."""

    def rule_comments(self) -> dict[str, list[str]]:
        """Group chain -> comments of its rules."""

    def group_comments(self, chain: str) -> list[str] | None:
        """Comments of one group chain's rules, or None if the chain is absent."""

    def expected_comments(self, group: RuleGroup) -> dict[str, list[str]]:
        """What rule_comments() shows for the group once applied."""

    def forward_blockers(self, versions: frozenset[int] = frozenset((4, 6))) -> list[str]:
        """Forward chains outside netkit's control that drop forwarded traffic by default and
        that this backend cannot let its attachments through (described, for the error); of the
        IP ``versions`` the attachment has addresses of, where a chain is of one family."""


def _which(name: str, path: str) -> str | None:
    """shutil.which for one plain name, without importing shutil (~3 ms of every in-process exec
    that picks a firewall backend; shutil itself imports fnmatch, bz2, lzma and more)."""
    for directory in path.split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def detect() -> str:
    """The backend of the host's ``iptables``: its alternatives link names the multi-binary."""
    exe = _which("iptables", os.environ.get("PATH", os.defpath)) or _which("iptables", "/usr/sbin:/sbin")
    if exe is None:
        return "nftables"
    return "iptables" if "legacy" in os.path.basename(os.path.realpath(exe)) else "nftables"


def choose(config: Mapping[str, Any], env: Mapping[str, str]) -> Backend:
    """The backend for this request: config key, then env var, then detection."""
    name = config.get(CONFIG_KEY) or env.get(ENV_OVERRIDE) or detect()
    if name not in NAMES:
        raise errors.CNIError(errors.INVALID_CONFIG, f"unknown {CONFIG_KEY} {name!r}", f"one of {', '.join(NAMES)}")
    if name == "nftables":
        from netkit.firewall.nftables import NftablesBackend

        return NftablesBackend()
    from netkit.firewall.iptables import IptablesBackend

    return IptablesBackend()
