"""containerd 1.6's `ctr run --cni` drives netkit's plugins: ADD when the task starts, DEL when it ends.

containerd and ctr run in the suite's containerd sandbox (harness/containerd.py): their own mount
namespace, where /opt/cni/bin, /etc/cni/net.d and /var/lib/cni are this test's temp dirs, inside a
throwaway sandbox host network namespace.  ctr execs the launchers `netkit cni install` writes, with
netkit's default conflist, exactly as it would on a host; the plugins' agent socket is the test's.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from typing import Iterator

import pytest

from harness import containerd as hc
from netkit.launch import install
from tests import sandbox as sb

SUBNET = ipaddress.ip_network("10.77.0.0/24")
GATEWAY = "10.77.0.1"


@pytest.fixture
def ctr(tmp_path: os.PathLike[str]) -> Iterator[tuple[hc.Containerd, sb.Sandbox]]:
    if os.geteuid() != 0:
        pytest.fail("the containerd end-to-end test needs root")
    missing = hc.missing_packages()
    if missing:
        pytest.fail(f"needs {', '.join(missing)}: apt-get install --no-install-recommends "
                    f"{' '.join(hc.PACKAGES)} (or ./setup.sh deps)", pytrace=False)
    top = os.path.join(str(tmp_path), "containerd")
    bin_dir, conf_dir, data_dir = (os.path.join(str(tmp_path), d) for d in ("bin", "net.d", "leases"))
    os.makedirs(top)
    report = install.install(bin_dir=bin_dir, conf_dir=conf_dir)
    conflist = install.default_conflist(SUBNET)
    conflist["plugins"][0]["ipam"]["dataDir"] = data_dir  # type: ignore[index]
    with open(report.conflist, "w") as f:
        json.dump(conflist, f)
    with sb.sandbox(bin_dir, data_dir) as box:
        daemon = hc.Containerd(top, box.host.path, bin_dir, conf_dir,
                               NETKIT_AGENT_SOCKET=os.path.join(str(tmp_path), "agent.sock"))
        try:
            daemon.start()
            yield daemon, box
        finally:
            problems = daemon.teardown()
        assert not problems, problems


def test_ctr_run_cni_attaches_the_task_and_detaches_it_when_it_ends(ctr: tuple[hc.Containerd, sb.Sandbox]) -> None:
    daemon, box = ctr
    run = daemon.ctr("run", "--rm", "--cni", hc.IMAGE, "ctr-e2e", "sh", "-c",
                     f"ip -4 -o addr show eth0 && ping -c1 -W2 {GATEWAY}", check=False)
    assert run.returncode == 0, run.stderr + run.stdout
    found = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/24", run.stdout)
    assert found and ipaddress.ip_address(found.group(1)) in SUBNET, run.stdout
    assert "1 packets received" in run.stdout, run.stdout  # a real echo reply from the bridge's gateway
    # ctr removed the network when the task ended: no veth, no lease, no cached result.
    veths = box.host.run("ip", "-o", "link", "show", "type", "veth").stdout
    assert veths.strip() == "", veths
    assert box.leases(install.DEFAULT_NETWORK) == []
    assert os.listdir(os.path.join(daemon.top, "cni-cache", "results")) == []
