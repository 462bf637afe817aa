"""Fixtures of the name-resolution tests: a records directory per test whose daemon goes with it."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from netkit.dns import control
from netkit.net import netns
from tests import sandbox as sb
from tests.dns.helpers import Dns


@pytest.fixture
def dns(box: sb.Sandbox, tmp_path: os.PathLike[str]) -> Iterator[Dns]:
    """Name resolution in ``box``: its records directory; the daemon a test caused is stopped after it."""
    helper = Dns(box, os.path.join(str(tmp_path), "dns"))
    yield helper
    with netns.entered(box.host.path):
        control.stop(helper.data_dir)


@pytest.fixture
def dns_inproc(inproc: sb.Sandbox, tmp_path: os.PathLike[str]) -> Iterator[Dns]:
    """``dns`` with the plugins in-process only."""
    helper = Dns(inproc, os.path.join(str(tmp_path), "dns"))
    yield helper
    with netns.entered(inproc.host.path):
        control.stop(helper.data_dir)
