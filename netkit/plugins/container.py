"""netkit-container: Docker's ``--network container:<owner>`` — join another container's namespace.

Config key ``container``: the owner's network namespace path.  The runtime passes that same
namespace as CNI_NETNS; ADD checks that both name one namespace and reports the owner's interfaces,
addresses and default routes.  Nothing is created, so DEL has nothing to undo; the owner's own
network is the owner's plugins' business.
"""

from __future__ import annotations

import os
from typing import Any

from netkit import errors
from netkit.cni.request import Request
from netkit.cni.result import Result
from netkit.net import netns
from netkit.net.netlink import IPRoute
from netkit.plugins import host


def owner_path(conf: dict[str, Any]) -> str:
    """The ``container`` key: an absolute path to the owner's network namespace."""
    value = conf.get("container")
    if not isinstance(value, str) or not value:
        raise errors.CNIError(errors.INVALID_CONFIG, "'container' must be the owner's network namespace path",
                              f"got {value!r}")
    if not os.path.isabs(value):
        raise errors.CNIError(errors.INVALID_CONFIG, "'container' must be an absolute path", repr(value))
    return value


def _identity(path: str) -> tuple[int, int]:
    """(st_dev, st_ino) of the namespace at ``path``; 3 if missing, 4 if not a namespace."""
    fd = netns.open_netns(path)
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return st.st_dev, st.st_ino


def _owner_identity(owner: str) -> tuple[int, int]:
    try:
        return _identity(owner)
    except errors.CNIError as exc:
        if exc.code == errors.UNKNOWN_CONTAINER:
            raise errors.CNIError(errors.UNKNOWN_CONTAINER, "the owner container's network namespace does not exist",
                                  owner) from None
        # It is the config that names a non-namespace here, not the environment.
        raise errors.CNIError(errors.INVALID_CONFIG, "'container' is not a usable network namespace",
                              exc.details or owner) from None


def add(req: Request) -> Result:
    """Check that CNI_NETNS is the owner's namespace and report the owner's network."""
    owner = owner_path(req.config)
    theirs = _owner_identity(owner)
    if _identity(req.netns) != theirs:
        raise errors.CNIError(errors.INVALID_ENV, "CNI_NETNS is not the owner container's network namespace",
                              f"CNI_NETNS={req.netns}, container={owner}: a container joining another's "
                              "network must be given the owner's namespace as CNI_NETNS")
    with netns.entered(owner), IPRoute() as ipr:
        return host.report(ipr, sandbox=owner)


def delete(req: Request) -> None:
    """Nothing was made; succeeds even when the owner or CNI_NETNS is gone."""


def check(req: Request) -> None:
    """Fail (106) when the owner's namespace is gone, is no longer CNI_NETNS, or lost a reported interface."""
    owner = owner_path(req.config)
    try:
        theirs = _owner_identity(owner)
    except errors.CNIError as exc:
        raise errors.CNIError(errors.CHECK_FAILED, "the owner container's network namespace is gone",
                              exc.details or owner) from None
    try:
        same = _identity(req.netns) == theirs
    except errors.CNIError:
        same = False
    if not same:
        raise errors.CNIError(errors.CHECK_FAILED, "CNI_NETNS is no longer the owner container's network namespace",
                              f"CNI_NETNS={req.netns}, container={owner}")
    prev = req.prev_result
    wanted = [i["name"] for i in (prev or {}).get("interfaces", []) if i.get("sandbox") and i.get("name")]
    if wanted:
        with netns.entered(owner), IPRoute() as ipr:
            have = {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        missing = [name for name in wanted if name not in have]
        if missing:
            raise errors.CNIError(errors.CHECK_FAILED, "the owner container lost interfaces",
                                  ", ".join(missing))


def gc(req: Request) -> None:
    """Nothing to collect."""


def status(req: Request) -> None:
    """Always ready."""
