"""The `netkit` command as users type it: the installed console script (the venv's bin/netkit, not
`python -m netkit`) with its default paths -- /opt/cni/bin, /etc/cni/net.d, /var/lib/cni, a bare
namespace name under /run/netns, the runtime root /var/lib/netkit -- each in a throwaway machine
(tests/throwaway.py) whose default directories start empty, so the real ones are never touched.
"""

from __future__ import annotations

import json
import os
import sys

from tests import throwaway
from tests.throwaway import Step
from tests.untouched import machine_untouched

NETKIT = os.path.join(os.path.dirname(sys.executable), "netkit")  # what pip installed for [project.scripts]
CTR = "netkit-ctr"  # a name tests/untouched.py compares: it must never appear on the machine


def _ok(result: throwaway.Result) -> str:
    assert result.returncode == 0, f"{' '.join(result.argv)}: {result.returncode}\n{result.stdout}{result.stderr}"
    return result.stdout


def test_netkit_is_the_installed_console_script() -> None:
    with open(NETKIT, encoding="utf-8") as f:
        script = f.read()
    assert script.startswith(f"#!{sys.executable}") and "from netkit.cli.thin import main" in script
    with machine_untouched():
        (version,) = throwaway.run([Step([NETKIT, "--version"])])
    assert _ok(version).startswith("netkit, version ")


def test_cni_install_writes_the_plugins_and_the_conflist_to_the_default_dirs() -> None:
    with machine_untouched():
        install, bins, conf = throwaway.run([
            Step([NETKIT, "cni", "install"]),
            Step(["ls", "/opt/cni/bin"]),
            Step(["cat", "/etc/cni/net.d/netkit.conflist"]),
        ])
    out = _ok(install)
    assert "installed /opt/cni/bin/netkit-bridge" in out and "wrote /etc/cni/net.d/netkit.conflist" in out
    assert {"netkit-bridge", "netkit-ipam", "netkit-loopback", "netkit-portmap"} <= set(_ok(bins).split())
    assert json.loads(_ok(conf))["plugins"][0]["bridge"] == "netkit0"


def test_cni_add_check_del_with_a_bare_namespace_name_and_the_default_dirs() -> None:
    with machine_untouched():
        install, _, add, ping, check, cache, leases, dele, cache_after, leases_after, links = throwaway.run([
            Step([NETKIT, "cni", "install"]),
            Step(["ip", "netns", "add", CTR]),
            Step([NETKIT, "cni", "add", "netkit", CTR]),         # /run/netns/CTR, /etc/cni/net.d, /opt/cni/bin
            Step(["ip", "netns", "exec", CTR, "ping", "-c", "3", "-W", "2", "172.17.0.1"]),
            Step([NETKIT, "cni", "check", "netkit", CTR]),
            Step(["ls", "/var/lib/cni/results"]),                # the result cache's default
            Step(["ls", "/var/lib/cni/networks/netkit"]),        # netkit-ipam's default dataDir
            Step([NETKIT, "cni", "del", "netkit", CTR]),
            Step(["ls", "/var/lib/cni/results"]),
            Step(["ls", "/var/lib/cni/networks/netkit"]),
            Step(["ip", "netns", "exec", CTR, "ip", "-br", "link"]),
        ])
    _ok(install)
    assert json.loads(_ok(add))["ips"][0]["address"] == "172.17.0.2/16"
    _ok(ping)
    assert _ok(check).strip() == "ok"
    assert [n for n in _ok(cache).split() if n.startswith("netkit-")] != []
    assert "172.17.0.2" in _ok(leases).split()
    _ok(dele)
    assert [n for n in _ok(cache_after).split() if n.startswith("netkit-")] == []
    assert "172.17.0.2" not in _ok(leases_after).split()
    assert [line.split()[0] for line in _ok(links).splitlines()] == ["lo"]


def test_run_keeps_its_state_in_the_default_root() -> None:
    with machine_untouched():
        run, ps, root, nets = throwaway.run([
            Step([NETKIT, "run", "--rm", "--", "ip", "-4", "-br", "addr", "show", "eth0"]),
            Step([NETKIT, "ps", "-a"]),
            Step(["ls", "/var/lib/netkit"]),
            Step([NETKIT, "network", "ls"]),
        ])
    assert "172.17.0.2/16" in _ok(run)
    assert _ok(ps).splitlines()[1:] == []  # --rm removed it
    assert {"containers", "networks", "bin", "ipam", "netns"} <= set(_ok(root).split())
    assert "bridge" in _ok(nets)


def test_cni_install_no_conflist_writes_the_plugins_only() -> None:
    # A Kubernetes node's init container: `netkit node` writes the conflist from the node's pod subnets.
    with machine_untouched():
        install, conf = throwaway.run([
            Step([NETKIT, "cni", "install", "--no-conflist"]),
            Step(["ls", "-A", "/etc/cni/net.d"]),
        ])
    out = _ok(install)
    assert "installed /opt/cni/bin/netkit-bridge" in out and "wrote" not in out
    assert conf.stdout.strip() == ""


def test_cni_install_require_native_fails_in_one_line_and_installs_nothing_without_a_compiler() -> None:
    # A Kubernetes node's init container: Python launchers would point into the image's venv, which
    # the host does not have, so the install must fail (the pod does not start) instead.
    env = {**Step([]).env, "CC": "/nonexistent/cc"}
    with machine_untouched():
        install, bins = throwaway.run([
            Step([NETKIT, "cni", "install", "--no-conflist", "--require-native", "--loopback"], env=env),
            Step(["ls", "-A", "/opt/cni/bin"]),
        ])
    assert install.returncode not in (0, None) and install.stdout == ""
    assert install.stderr.count("\n") == 1 and "/nonexistent/cc" in install.stderr, install.stderr
    assert "nothing installed" in install.stderr and "Traceback" not in install.stderr
    assert bins.stdout.strip() == ""   # no launcher, no .netkit/, no loopback


def test_cni_install_require_native_and_loopback_as_the_daemonset_runs_it() -> None:
    # With a compiler: C launchers and `loopback` as netkit-loopback; uninstall takes all of it back.
    with machine_untouched():
        install, link, again, uninstall, bins = throwaway.run([
            Step([NETKIT, "cni", "install", "--no-conflist", "--require-native", "--loopback"]),
            Step(["readlink", "/opt/cni/bin/loopback"]),
            Step([NETKIT, "cni", "install", "--no-conflist", "--require-native", "--loopback"]),
            Step([NETKIT, "cni", "uninstall"]),
            Step(["ls", "-A", "/opt/cni/bin"]),
        ])
    assert "installed /opt/cni/bin/loopback -> netkit-loopback" in _ok(install)
    assert "Python launchers" not in _ok(install)
    assert _ok(link).strip() == "netkit-loopback"
    assert "installed /opt/cni/bin/loopback -> netkit-loopback" in _ok(again)   # still netkit's: kept as is
    assert "removed /opt/cni/bin/loopback" in _ok(uninstall)
    assert bins.stdout.strip() == ""
