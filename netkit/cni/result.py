"""CNI results: one internal shape (spec 1.x) and conversion from/to every supported version.

Plugins build and consume the internal shape only; the handler converts at the edges, so a plugin
never knows which spec version the runtime asked for.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from netkit import errors
from netkit.cni import version as versions

Result = dict[str, Any]

# Fields that spec 1.1.0 added; older readers may reject them.
_ROUTE_FIELDS_1_1 = ("mtu", "advmss", "priority", "table", "scope")
_INTERFACE_FIELDS_1_1 = ("mtu", "socketPath", "pciID")


def _copy(value: Any) -> Any:
    """A copy of a JSON value (dicts, lists, scalars): what a deep copy makes of one, without
    deepcopy's memo and dispatch (~110 calls per result, twice per chained request)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def normalize(raw: object) -> Result:
    """Read a result of any supported version (a prevResult, a delegate's answer) into the internal shape."""
    if not isinstance(raw, dict):
        raise errors.CNIError(errors.DECODE_FAILURE, "result is not a JSON object", repr(raw)[:200])
    result = _copy(raw)
    result.pop("cniVersion", None)
    ips = result.get("ips", [])
    if not isinstance(ips, list):
        raise errors.CNIError(errors.DECODE_FAILURE, "result field 'ips' is not a list")
    for key in ("interfaces", "routes"):
        if not isinstance(result.get(key, []), list):
            raise errors.CNIError(errors.DECODE_FAILURE, f"result field {key!r} is not a list")
    interfaces = result.get("interfaces", [])
    for iface in interfaces:
        if not isinstance(iface, dict) or not isinstance(iface.get("name"), str):
            raise errors.CNIError(errors.DECODE_FAILURE, "result interface entry has no name", repr(iface)[:200])
        for field in ("mac", "sandbox"):
            if not isinstance(iface.get(field, ""), str):
                raise errors.CNIError(errors.DECODE_FAILURE, f"result interface field {field!r} is not a string",
                                      repr(iface)[:200])
    for ip in ips:
        if not isinstance(ip, dict) or not isinstance(ip.get("address"), str):
            raise errors.CNIError(errors.DECODE_FAILURE, "result IP entry has no address", repr(ip)[:200])
        _parsed(ipaddress.ip_interface, ip["address"], "result IP entry has a bad address")
        if ip.get("gateway") is not None:
            _parsed(ipaddress.ip_address, ip["gateway"], "result IP entry has a bad gateway")
        index = ip.get("interface")
        # Plugins index result["interfaces"] with it: a bool, negative or dangling index is a lie.
        if index is not None and (not isinstance(index, int) or isinstance(index, bool)
                                  or not 0 <= index < len(interfaces)):
            raise errors.CNIError(errors.DECODE_FAILURE, "result IP entry has a bad interface index", repr(index))
        ip.pop("version", None)
    for route in result.get("routes", []):
        if not isinstance(route, dict) or "dst" not in route:
            raise errors.CNIError(errors.DECODE_FAILURE, "result route has no dst", repr(route)[:200])
        _parsed(lambda v: ipaddress.ip_network(v, strict=False), route["dst"], "result route has a bad dst")
        if route.get("gw") is not None:
            _parsed(ipaddress.ip_address, route["gw"], "result route has a bad gw")
    if not isinstance(result.get("dns", {}), dict):
        raise errors.CNIError(errors.DECODE_FAILURE, "result field 'dns' is not an object")
    return result


def _parsed(parse: Any, value: object, msg: str) -> Any:
    """``parse(value)`` for an address string; anything else is the spec's decode failure."""
    if not isinstance(value, str):
        raise errors.CNIError(errors.DECODE_FAILURE, msg, repr(value)[:200])
    try:
        return parse(value)
    except ValueError as exc:
        raise errors.CNIError(errors.DECODE_FAILURE, msg, str(exc)[:200]) from None


def encode(result: Result, cni_version: str) -> Result:
    """Write the internal shape in the spec version the request asked for."""
    out: Result = {"cniVersion": cni_version}
    out.update(_copy(result))
    old = versions.parse(cni_version)
    if old < (1, 0, 0):
        for ip in out.get("ips", []):
            ip["version"] = str(ipaddress.ip_interface(ip["address"]).version)
    if old < (1, 1, 0):
        for route in out.get("routes", []):
            for field in _ROUTE_FIELDS_1_1:
                route.pop(field, None)
        for iface in out.get("interfaces", []):
            for field in _INTERFACE_FIELDS_1_1:
                iface.pop(field, None)
    return out
