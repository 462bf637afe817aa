"""Shared fixtures: plugin executables installed once per run, and a sandbox host per test."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from netkit import install
from tests import sandbox as sb


@pytest.fixture(scope="session")
def plugin_bin(tmp_path_factory: pytest.TempPathFactory) -> str:
    """netkit's plugin executables, written by the real installer into a temp bin dir."""
    root = tmp_path_factory.mktemp("cni")
    install.install(bin_dir=str(root / "bin"), conf_dir=str(root / "conf"))
    return str(root / "bin")


@pytest.fixture
def box(plugin_bin: str, tmp_path: os.PathLike[str]) -> Iterator[sb.Sandbox]:
    """A throwaway sandbox host namespace with its own lease directory."""
    if os.geteuid() != 0:
        pytest.fail("namespace tests need root")
    with sb.sandbox(plugin_bin, os.path.join(str(tmp_path), "leases")) as box:
        yield box


@pytest.fixture(params=["nftables", "iptables"])
def fw_box(request: pytest.FixtureRequest, box: sb.Sandbox) -> sb.Sandbox:
    """A sandbox whose plugins use one firewall backend; every firewall test runs on both."""
    box.firewall = request.param
    return box


@pytest.fixture(scope="session")
def reference_plugins() -> str:
    """Debian's containernetworking-plugins; the setup script installs them."""
    if not os.path.exists(os.path.join(sb.REFERENCE_BIN, "bridge")):
        pytest.fail(f"reference plugins missing in {sb.REFERENCE_BIN}: run ./setup.sh test")
    return sb.REFERENCE_BIN


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if anything this suite made is still on the machine."""
    left = sb.leftovers()
    if left:
        print("\nLEFT ON THE MACHINE BY THE SUITE: " + ", ".join(left))
        for name in [x.split()[1] for x in left if x.startswith("netns ")]:
            sb.ip("netns", "del", name, check=False)
        session.exitstatus = 1
