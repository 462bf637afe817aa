"""netkit-portmap: publish container ports with DNAT (drop-in for the reference ``portmap``).

Chained after a bridge: reads the container's addresses from prevResult, takes the mappings from
``runtimeConfig.portMappings`` (capability ``portMappings``), and passes prevResult through.
"""

from __future__ import annotations


from netkit import errors, failpoints
from netkit.cni.request import Request
from netkit.cni.result import Result
from netkit.firewall import groups
from netkit.plugins import chained, proxy6, publish
from netkit.rollback import Rollback


def _prev(req: Request) -> Result:
    return chained.previous(req, "netkit-portmap")


def add(req: Request) -> Result:
    """Install the attachment's port mappings."""
    prev = _prev(req)
    group = publish.dnat_group(req, publish.container_addresses(prev))
    if group.mappings and not group.addresses:
        raise errors.CNIError(errors.INVALID_CONFIG, "prevResult has no container address to publish ports of")
    fw = publish.backend(req)
    with Rollback() as undo:
        # Registered first: a publish that fails after its rules went in (conntrack flush) leaves nothing.
        undo.push(publish.unpublish, fw, req)
        publish.publish(fw, group, publish.host_bridge(prev), publish.host_veth(prev))
        failpoints.hit("portmap.add.after-publish")
    return prev


def delete(req: Request) -> None:
    """Remove the attachment's port mappings, even with no prevResult and the container gone."""
    publish.dnat_group(req, [])  # validates the config, as ADD would
    publish.unpublish(publish.backend(req), req)
    failpoints.hit("portmap.del.after-unpublish")


def check(req: Request) -> None:
    """Fail unless every rule of the attachment's mappings is in place."""
    prev = _prev(req)
    group = publish.dnat_group(req, publish.container_addresses(prev))
    if group.mappings:
        groups.check(publish.backend(req), group)
        proxy6.check(group)


def gc(req: Request) -> None:
    """Remove rules of this network's attachments not in the valid list."""
    publish.gc(publish.backend(req), req)


def status(req: Request) -> None:
    """Ready when the firewall backend answers."""
    fw = publish.backend(req)
    try:
        fw.chains()
    except errors.CNIError as exc:
        raise errors.CNIError(errors.NOT_AVAILABLE, f"{fw.name} firewall unavailable", str(exc)) from None


warm_up = publish.warm_up
