"""The iptables backend's IPv6 half: ip6tables operations in a child process of their own.

Why a process: python-iptables cannot serve both families in one process.  An xtables extension
registers its targets for the family current when its library is first loaded, and DNAT and
MASQUERADE live in one library (libxt_NAT.so): once the IPv4 half has loaded it, IPv6 rules get
"can't find target DNAT".  A child that loads only the IPv6 extensions does the same operations
with the same code (``iptables.IptablesFamily(6)``: the layout, the comments, the FORWARD
accepts, the per-table commits and their rollback), so both families read alike to CHECK, GC and
conflict detection.  The alternative, the ``ip6tables-legacy-restore`` tool fed a script, would
have meant a second, text-based copy of that layout.

The child starts in the calling thread's network namespace (a forked task inherits its creator's
namespaces, and a plugin thread of the agent has joined the caller's), reads one request (JSON) on
stdin and answers JSON on stdout; a CNIError crosses as its code, message and details.  It costs an
interpreter start (~60 ms here), paid only where IPv6 rules exist or are asked for.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from typing import Any

from netkit import errors
from netkit.firewall.model import NetworkRules, PortMapping, RuleGroup

# What the child runs: no site import (the parent's sys.path is handed over, as the plugin
# launchers do), then this module's main().
_BOOT = "import sys, json; sys.path[:0] = json.loads(sys.argv[1]); from netkit.firewall.iptables6 import main; main()"


def _group_json(group: RuleGroup) -> dict[str, Any]:
    return {"kind": group.kind, "network": group.network, "container_id": group.container_id, "ifname": group.ifname,
            "addresses": [str(a) for a in group.addresses], "mappings": [list(m) for m in group.mappings],
            "snat": group.snat, "masq_all": group.masq_all}


def _group(raw: dict[str, Any]) -> RuleGroup:
    return RuleGroup(raw["kind"], raw["network"], raw["container_id"], raw["ifname"],
                     [ipaddress.ip_interface(a) for a in raw["addresses"]], [PortMapping(*m) for m in raw["mappings"]],
                     raw["snat"], raw["masq_all"])


def call(op: str, arg: Any = None) -> Any:
    """Run one operation of the IPv6 half (``IptablesFamily(6)``'s method ``op``) in a child; its answer."""
    if isinstance(arg, RuleGroup):
        arg = _group_json(arg)
    elif isinstance(arg, NetworkRules):
        arg = arg._asdict()
    elif isinstance(arg, set):
        arg = sorted(arg)
    paths = json.dumps([p for p in sys.path if p])
    try:
        proc = subprocess.run([sys.executable, "-I", "-S", "-c", _BOOT, paths],
                              input=json.dumps({"op": op, "arg": arg}).encode(), capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise errors.CNIError(errors.KERNEL, "ip6tables helper failed to run", str(exc)) from None
    try:
        answer = json.loads(proc.stdout)
    except ValueError:
        raise errors.CNIError(errors.KERNEL, "ip6tables helper failed",
                              proc.stderr.decode(errors="replace").strip()[-500:]) from None
    if "error" in answer:
        code, msg, details = answer["error"]
        raise errors.CNIError(code, msg, details)
    return answer["result"]


def _serve(request: dict[str, Any]) -> Any:
    from netkit.firewall.iptables import IptablesFamily

    fw, op, arg = IptablesFamily(6), request["op"], request["arg"]
    if op == "apply":
        return fw.apply(_group(arg))
    if op == "apply_network":
        return fw.apply_network(NetworkRules(**arg))
    if op == "remove_chains":
        return fw.remove_chains(set(arg))
    if op == "chains":
        return sorted(fw.chains())
    if op == "rule_comments":
        return fw.rule_comments()
    if op == "group_comments":
        return fw.group_comments(arg)
    if op == "forward_drops":
        from netkit.firewall import iptables_session

        with iptables_session.session(version=6) as s:
            return s.forward_drops(s.table("filter"))
    raise errors.CNIError(errors.INTERNAL, f"unknown ip6tables operation {op!r}")


def main() -> None:
    """The child: one request from stdin, its answer on stdout; exit status 0 either way (the
    answer says what happened)."""
    request = json.loads(sys.stdin.buffer.read())
    try:
        answer: dict[str, Any] = {"result": _serve(request)}
    except errors.CNIError as exc:
        answer = {"error": [exc.code, exc.msg, exc.details]}
    sys.stdout.write(json.dumps(answer))
