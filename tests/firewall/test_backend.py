"""Choosing the firewall backend: the host's own iptables decides unless config or env says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from netkit import errors
from netkit.firewall import backend


def _fake_iptables(tmp_path: Path, multi: str) -> str:
    target = tmp_path / multi
    target.write_text("#!/bin/sh\n")
    target.chmod(0o755)
    (tmp_path / "iptables").symlink_to(target)
    return str(tmp_path)


@pytest.mark.parametrize("multi, expected", [("xtables-legacy-multi", "iptables"), ("xtables-nft-multi", "nftables")])
def test_detect_follows_the_hosts_iptables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, multi: str,
                                           expected: str) -> None:
    monkeypatch.setenv("PATH", _fake_iptables(tmp_path, multi))
    assert backend.detect() == expected


def test_config_key_beats_env_beats_detection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", _fake_iptables(tmp_path, "xtables-legacy-multi"))
    assert backend.choose({}, {}).name == "iptables"
    assert backend.choose({}, {backend.ENV_OVERRIDE: "nftables"}).name == "nftables"
    assert backend.choose({backend.CONFIG_KEY: "iptables"}, {backend.ENV_OVERRIDE: "nftables"}).name == "iptables"


def test_unknown_backend_is_code_7() -> None:
    with pytest.raises(errors.CNIError) as exc:
        backend.choose({backend.CONFIG_KEY: "pf"}, os.environ)
    assert exc.value.code == errors.INVALID_CONFIG
