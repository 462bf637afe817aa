"""Fixtures of the end-to-end suite: podman drives the CNI plugins.

``podman_store`` (session): podman's own config, storage and the imported busybox image, shared by
every test; ``net`` (module, parametrized): one variant of plugins -- netkit's, or Debian's reference
plugins as the control -- behind a podman network in a sandbox host of its own; ``pm`` (test): that
network, with every container removed after the test, pass or fail.
"""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from harness import podman as hp
from tests import sandbox as sb
from tests.e2e import podman as pmod


@pytest.fixture(scope="session")
def podman_store() -> Iterator[pmod.Store]:
    if os.geteuid() != 0:
        pytest.fail("the podman end-to-end suite needs root (network namespaces, rootful podman)")
    missing = hp.missing_packages()
    if missing:
        pytest.fail(f"the podman end-to-end suite needs {', '.join(missing)}: "
                    f"apt-get install --no-install-recommends {' '.join(hp.PACKAGES)} (or ./setup.sh deps)",
                    pytrace=False)
    if sb.missing_reference_plugins():
        pytest.fail(f"reference plugins missing in {sb.REFERENCE_BIN}: {', '.join(sb.missing_reference_plugins())}: "
                    f"apt-get install containernetworking-plugins", pytrace=False)
    with pmod.store() as store:
        yield store


@pytest.fixture(scope="module", params=hp.VARIANTS)
def net(request: pytest.FixtureRequest, podman_store: pmod.Store) -> Iterator[pmod.Network]:
    with pmod.network(podman_store, request.param) as network:
        yield network


@pytest.fixture
def pm(net: pmod.Network) -> Iterator[pmod.Network]:
    try:
        yield net
    finally:
        net.podman.rm_all()


def pytest_keyboard_interrupt(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    """On Ctrl-C pytest tears fixtures down only after the session-wide leftover check (tests/conftest.py),
    which deletes every sandbox namespace it finds, and podman needs them to remove its containers
    (CNI DEL runs there): remove everything of podman's now, before that check."""
    for store in list(pmod.ACTIVE):
        store.teardown()
