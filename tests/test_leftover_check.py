"""The suite's end-of-run check (tests/conftest.py, tests/machine.py): it reports what the run left or
changed, never what was on the machine before the run (a demo's table, bridge and ip_forward).

Each test gives the check a throwaway namespace as "the machine": a pytest session of its own runs
inside it with this suite's conftest, so the real hooks take the real snapshot there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from typing import Iterator

import pytest

from netkit.firewall import ports
from tests import machine
from tests import sandbox as sb

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADLINE = "LEFT ON THE MACHINE BY THE SUITE"

# What `./setup.sh demo` leaves in a machine's namespace (the README says so), in small.
DEMO_RULESET = """
table inet netkit {
    set bridges { type ifname; elements = { "netkit0" } }
    chain forward { type filter hook forward priority filter; policy accept; ct state established,related accept comment "netkit"; }
    chain hostports { }
}
table bridge netkit {
    chain forward { type filter hook forward priority 0; policy accept; }
}
"""

LEAKS_RULESET = """
add chain inet netkit NK-D-leak
add rule inet netkit hostports tcp dport 9999 jump NK-D-leak comment "NK-D-leak"
add element inet netkit bridges { "nkleak0" }
"""


@pytest.fixture
def demo_machine() -> Iterator[sb.Namespace]:
    """A throwaway namespace holding what the demo leaves: `inet netkit`, `netkit0`, ip_forward=1,
    and (as on a legacy-iptables host) a netkit chain in the legacy nat table."""
    ns = sb.Namespace(sb.unique("lc"))
    sb.ip("netns", "add", ns.name)
    key = ports.namespace_key(ns.path)
    try:
        ns.run("ip", "link", "set", "lo", "up", check=True)
        ns.run("nft", "-f", "-", input=DEMO_RULESET, check=True)
        ns.run("ip", "link", "add", "netkit0", "type", "bridge", check=True)
        ns.run("sysctl", "-qw", "net.ipv4.ip_forward=1", check=True)
        ns.run("iptables-legacy", "-t", "nat", "-N", "NK-N-demo", check=True)
        yield ns
    finally:
        ports.forget_namespace(key)  # what a session in it may have indexed
        sb.ip("netns", "del", ns.name, check=False)


def _session_in(ns: sb.Namespace, tmp: str, body: str) -> subprocess.CompletedProcess[str]:
    """A pytest session with this suite's conftest inside ``ns``, running one test of ``body``."""
    test = os.path.join(tmp, "test_inner.py")
    with open(test, "w") as f:
        f.write(textwrap.dedent(body))
    return ns.run(sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q",
                  "--rootdir", tmp, "--basetemp", os.path.join(tmp, "basetemp"), test, cwd=REPO, timeout=120)


def test_what_was_there_before_the_run_is_not_reported(demo_machine: sb.Namespace, tmp_path: os.PathLike[str]) -> None:
    # The old check reported `nft table inet netkit` here and failed the run.
    proc = _session_in(demo_machine, str(tmp_path), "def test_nothing():\n    pass\n")
    assert HEADLINE not in proc.stdout, proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_what_the_run_adds_or_changes_is_reported_and_its_process_killed(
        demo_machine: sb.Namespace, tmp_path: os.PathLike[str]) -> None:
    tmp = str(tmp_path)
    pid_file = os.path.join(tmp, "pid")
    proc = _session_in(demo_machine, tmp, f"""
        import os, subprocess
        from netkit.firewall import ports

        def test_leaves_things_behind():
            subprocess.run(["nft", "-f", "-"], input={LEAKS_RULESET!r}, text=True, check=True)
            subprocess.run(["ip", "link", "add", "nkleak0", "type", "bridge"], check=True)
            subprocess.run(["sysctl", "-qw", "net.ipv4.ip_forward=0"], check=True)
            subprocess.run(["iptables-legacy", "-t", "nat", "-N", "NK-D-leak"], check=True)
            index = ports.PortIndex().dir
            os.makedirs(index)
            open(os.path.join(index, "leak"), "w").close()
            with open({pid_file!r}, "w") as f:
                f.write(str(subprocess.Popen(["sleep", "300"]).pid))
        """)
    pid = int(open(pid_file).read())
    key = ports.namespace_key(demo_machine.path)
    report = next((line for line in proc.stdout.splitlines() if HEADLINE in line), "")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for leak in ("nft inet netkit: chain NK-D-leak", "nft inet netkit: rule in hostports (NK-D-leak)",
                 "nft inet netkit: set bridges (changed)", "link nkleak0", "sysctl net.ipv4.ip_forward 1 -> 0",
                 "iptables-legacy nat :NK-D-leak", f"file {ports.ROOT}/{key}/leak", f"process {pid} (sleep 300)"):
        assert leak in report, f"{leak!r} not in {report!r}"
    for there_before in ("nft table inet netkit", "nft table bridge netkit", "link netkit0", "NK-N-demo"):
        assert there_before not in report
    deadline = time.monotonic() + 30  # the kill is sent; init reaps the orphan
    while os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/cmdline").read() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{pid}") or not open(f"/proc/{pid}/cmdline").read(), "sleep still running"


def test_a_table_the_run_removed_is_reported_gone(demo_machine: sb.Namespace) -> None:
    before = machine.snapshot(demo_machine.path, dirs=())
    assert machine.changes(before, machine.snapshot(demo_machine.path, dirs=())) == []
    demo_machine.run("nft", "delete", "table", "inet", "netkit", check=True)
    gone = machine.changes(before, machine.snapshot(demo_machine.path, dirs=()))
    assert "nft table inet netkit (gone)" in gone and "nft inet netkit: chain forward (gone)" in gone


def test_files_are_reported_lock_files_and_directories_are_not(tmp_path: os.PathLike[str]) -> None:
    top = os.path.join(str(tmp_path), "run-netkit")
    os.makedirs(os.path.join(top, "old"))
    open(os.path.join(top, "old", "kept"), "w").close()
    before = machine.snapshot(dirs=(top,))
    os.makedirs(os.path.join(top, "lab", "x"))
    for name in ("firewall.lock", "lab/x/state.json"):
        open(os.path.join(top, name), "w").close()
    os.unlink(os.path.join(top, "old", "kept"))
    found = [c for c in machine.changes(before, machine.snapshot(dirs=(top,))) if c.startswith("file ")]
    assert sorted(found) == [f"file {top}/lab/x/state.json", f"file {top}/old/kept (gone)"]


def test_an_agent_a_test_caused_and_left_fails_that_test(demo_machine: sb.Namespace, tmp_path: os.PathLike[str]) -> None:
    # A launcher of the default install that finds no agent starts one; the test forgets to stop it.
    tmp = str(tmp_path)
    pid_file = os.path.join(tmp, "pid")
    proc = _session_in(demo_machine, tmp, f"""
        import subprocess, time
        from netkit.agent import lifelock
        from netkit.launch import install

        def test_starts_an_agent_and_leaves_it(tmp_path):
            install.install_plugins(str(tmp_path / "bin"))
            sock = str(tmp_path / "agent.sock")
            subprocess.run([str(tmp_path / "bin" / "netkit-ipam")], input=b'{{"cniVersion": "1.0.0"}}', check=True,
                           env={{"CNI_COMMAND": "VERSION", "NETKIT_AGENT_SOCKET": sock}}, capture_output=True)
            assert lifelock.wait_until(lambda: lifelock.holder(sock) is not None, 30)
            open({pid_file!r}, "w").write(str(lifelock.holder(sock)[0]))
        """)
    pid = int(open(pid_file).read())
    assert proc.returncode == 1 and "the test left netkit agent(s) running" in proc.stdout, proc.stdout + proc.stderr
    assert f"{pid}" in proc.stdout
    deadline = time.monotonic() + 30  # the check killed it; init reaps the orphan
    while os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/cmdline").read() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}") or not open(f"/proc/{pid}/cmdline").read()
