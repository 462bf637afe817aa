"""`netkit cni install --loopback`: containerd's CRI plugin runs plugin type ``loopback`` from its bin
dir for every pod, so a node without the reference plugins gets netkit-loopback under that name; the
node's own ``loopback`` is never replaced, and uninstall takes back only netkit's."""

from __future__ import annotations

import os
from pathlib import Path

from netkit.launch import install, uninstall


def test_loopback_is_netkit_loopback_until_uninstall(tmp_path: Path) -> None:
    bin_dir = str(tmp_path / "bin")
    report = install.install(bin_dir, str(tmp_path / "conf"), conflist=False, loopback=True)
    alias = os.path.join(bin_dir, "loopback")
    assert report.loopback == alias and os.readlink(alias) == "netkit-loopback" and report.notes == []
    assert os.path.samefile(alias, os.path.join(bin_dir, "netkit-loopback"))
    again = install.install(bin_dir, str(tmp_path / "conf"), conflist=False, loopback=True)
    assert again.loopback == alias and again.notes == []      # netkit's already: kept, said as installed
    done = uninstall.uninstall(bin_dir, str(tmp_path / "conf"), str(tmp_path / "units"),
                               str(tmp_path / "agent.sock"), systemd=False)
    assert alias in done.removed and not os.path.lexists(alias)


def test_without_the_option_there_is_no_loopback(tmp_path: Path) -> None:
    bin_dir = str(tmp_path / "bin")
    assert install.install(bin_dir, str(tmp_path / "conf"), conflist=False).loopback == ""
    assert not os.path.lexists(os.path.join(bin_dir, "loopback"))


def test_the_nodes_own_loopback_is_kept_by_install_and_uninstall(tmp_path: Path) -> None:
    for kind, make in (("file", lambda p: p.write_bytes(b"\x7fELF reference plugin")),
                       ("link", lambda p: p.symlink_to("/usr/lib/cni/loopback"))):
        bin_dir = tmp_path / kind
        bin_dir.mkdir()
        alias = bin_dir / "loopback"
        make(alias)
        before = (os.path.islink(alias), os.readlink(alias) if os.path.islink(alias) else alias.read_bytes())
        report = install.install(str(bin_dir), str(tmp_path / "conf"), conflist=False, loopback=True)
        assert report.loopback == "" and report.notes == [f"kept {alias} (not netkit's)"], kind
        done = uninstall.uninstall(str(bin_dir), str(tmp_path / "conf"), str(tmp_path / "units"),
                                   str(tmp_path / "agent.sock"), systemd=False)
        assert str(alias) not in done.removed, kind
        assert (os.path.islink(alias), os.readlink(alias) if os.path.islink(alias) else alias.read_bytes()) == before
