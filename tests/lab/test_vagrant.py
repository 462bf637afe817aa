"""`lab vagrantfile`: the generated Vagrantfile passes `vagrant validate`, and the provisioning
command it gives each box, run inside the local backend's hosts, builds the same lab."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

import pytest

from netkit.lab import scenario, vagrant
from tests.lab.conftest import SHIPPED, SCENARIOS
from tests.lab.conftest import scenario as shipped


def _validate(tmp_path: os.PathLike[str], text: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("vagrant") is None:
        pytest.fail("vagrant is missing: ./setup.sh installs Debian's vagrant package")
    d = os.path.join(str(tmp_path), "box")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "Vagrantfile"), "w", encoding="utf-8") as f:
        f.write(text)
    # Its own VAGRANT_HOME: validating never touches the machine's ~/.vagrant.d.
    env = dict(os.environ, VAGRANT_HOME=os.path.join(str(tmp_path), "vagrant.d"), VAGRANT_CHECKPOINT_DISABLE="1")
    return subprocess.run(["vagrant", "validate"], cwd=d, capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("name", SHIPPED)
def test_generated_vagrantfile_passes_vagrant_validate(name: str, tmp_path: os.PathLike[str]) -> None:
    sc = scenario.load(shipped(name))
    text = vagrant.render(sc)
    proc = _validate(tmp_path, text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validated successfully" in proc.stdout
    assert text.count("config.vm.define") == len(sc.hosts)
    # One per address: a dual-stack link's IPv6 address is a second private network on the same wire.
    assert text.count('"private_network"') == sum(len(h.addresses) + len(h.addresses6) for h in sc.hosts.values())


def test_vagrant_validate_rejects_a_broken_vagrantfile(tmp_path: os.PathLike[str]) -> None:
    """The control: validation can fail, so the test above proves something."""
    text = vagrant.render(scenario.load(shipped("isolation"))).replace("m.vm.hostname", "m.vm.hostnme", 1)
    proc = _validate(tmp_path, text)
    assert proc.returncode != 0 and "hostnme" in proc.stdout + proc.stderr


def _local_argv(argv: list[str]) -> list[str]:
    """A box's command with the box's paths mapped to this checkout."""
    exe, *rest = argv
    assert exe == f"{vagrant.GUEST_SOURCE}/.venv/bin/netkit"
    return [sys.executable, "-m", "netkit",
            *(a.replace(vagrant.GUEST_LAB, SCENARIOS) if a.startswith(vagrant.GUEST_LAB) else a for a in rest)]


def test_per_host_provisioning_commands_build_the_same_lab_on_local_hosts(make_lab: "callable") -> None:  # type: ignore[valid-type]
    lab = make_lab(shipped("edge-node"))
    sc = scenario.load(shipped("edge-node"))
    text = vagrant.render(sc, name=lab.name)
    lab("up", "--fabric-only")  # the machines and wires Vagrant would make; nothing on them yet
    assert lab("test", check=False).returncode == 1
    for host in sc.hosts:
        setup, up = vagrant.provision_commands(sc, host, lab.name)
        assert shlex.join(setup) in text and shlex.join(up) in text  # what the box would run
        proc = subprocess.run(["nsenter", f"--net={lab.host_ns(host)}", *_local_argv(up)], capture_output=True,
                              text=True, timeout=120, env=dict(lab.env, NETKIT_ROOT=lab.root(host)))
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    result = lab("test")
    assert result.stdout.rstrip().endswith(" 0 failed")
