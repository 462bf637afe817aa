"""`netkit run` and the management commands, in a sandbox host, with real traffic."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests import reach
from tests.runtime.conftest import Runtime, second_runtime_sharing
from tests.sandbox import AS_NOBODY, TRAFFIC

HOST, MACHINE = "10.30.0.1", "10.30.0.2"
HTTP = ["python3", "-m", "http.server", "80"]


def _serve(rt: Runtime, name: str, *ports: int, extra: tuple[str, ...] = ()) -> None:
    rt("run", "-d", "--name", name, *extra, "--", sys.executable, TRAFFIC, "serve", name, *map(str, ports))


def _http(ns: object, url: str) -> str | None:
    """The HTTP status of ``url`` fetched inside ``ns``, trying a few times (tests/reach.py); None if none answered."""
    def once() -> str | None:
        proc = ns.run(sys.executable, "-c", f"import urllib.request;print(urllib.request.urlopen({url!r}, timeout=3).status)")  # type: ignore[attr-defined]
        return proc.stdout.strip() if proc.returncode == 0 else None
    return reach.first_answer(once)


def _exec_answer(rt: Runtime, name: str, *argv: str) -> str | None:
    """The output of ``netkit exec NAME -- ARGV`` that probes the network, trying a few times; None if every try failed."""
    def once() -> str | None:
        proc = rt("exec", name, "--", *argv, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None
    return reach.first_answer(once)


def test_published_http_answers_from_host_localhost_other_container_and_machine(rt: Runtime) -> None:
    x = rt.box.machine([HOST], MACHINE)
    rt("run", "-d", "--name", "web", "-p", "8080:80", "--", *HTTP)
    assert rt.wait_answer(lambda: _http(rt.box.host, "http://127.0.0.1:8080/") == "200")
    assert _http(rt.box.host, f"http://{HOST}:8080/") == "200"
    assert _http(x, f"http://{HOST}:8080/") == "200"
    rt("run", "-d", "--name", "client", "--", "sleep", "300")
    got = _exec_answer(rt, "client", sys.executable, "-c",
                       f"import urllib.request;print(urllib.request.urlopen('http://{HOST}:8080/', timeout=3).status)")
    assert got == "200"
    assert "80/tcp -> 0.0.0.0:8080" in rt("port", "web").stdout


def test_publish_forms_localhost_udp_random_and_ranges(rt: Runtime) -> None:
    x = rt.box.machine([HOST], MACHINE)
    _serve(rt, "lo", 80, extra=("-p", "127.0.0.1:8081:80"))
    _serve(rt, "udp", 80, extra=("-p", "8082:80/udp"))
    _serve(rt, "rnd", 80, extra=("-p", "80"))
    _serve(rt, "rng", 80, 81, 82, extra=("-p", "8000-8002:80-82"))
    assert rt.wait_answer(lambda: rt.box.host.ask("tcp", "127.0.0.1", 8081) is not None)
    assert (x.ask("udp", HOST, 8082) or "").startswith("udp ")
    port = int(rt("port", "rnd").stdout.strip().rsplit(":", 1)[1])
    assert port > 1024 and (x.ask("tcp", HOST, port) or "").startswith("rnd ")
    for p in (8000, 8001, 8002):
        assert (x.ask("tcp", HOST, p) or "").startswith("rng ")
    # Bound to 127.0.0.1 only; control: X reaches the ports published on all addresses.
    assert x.unanswered("tcp", HOST, 8081, control=x.ask("tcp", HOST, 8000))


@pytest.mark.parametrize("mode", ["host", "none"])
def test_publish_with_host_or_none_is_an_error(rt: Runtime, mode: str) -> None:
    proc = rt("run", "--net", mode, "-p", "8080:80", "--", "true", check=False)
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1 and "netkit: error:" in proc.stderr


def test_none_has_only_lo_up(rt: Runtime) -> None:
    out = rt("run", "--rm", "--net=none", "--", "ip", "-j", "link").stdout
    links = json.loads(out)
    assert [link["ifname"] for link in links] == ["lo"] and "UP" in links[0]["flags"]


def test_labels_are_kept_and_shown_by_inspect(rt: Runtime) -> None:
    rt("run", "-d", "--name", "labelled", "--label", "team=net", "-l", "tier=", "--net=none", "--", "sleep", "300")
    assert rt.inspect("labelled")["Config"]["Labels"] == {"team": "net", "tier": ""}


def test_host_mode_sees_the_hosts_interfaces(rt: Runtime) -> None:
    rt.box.machine([HOST], MACHINE)
    out = rt("run", "--rm", "--net=host", "--", "ip", "-br", "addr").stdout
    assert "uplink0" in out and HOST in out


def test_container_mode_shares_the_owners_network(rt: Runtime) -> None:
    rt("run", "-d", "--name", "owner", "--", "sleep", "300")
    owner_ip = rt.ip("owner")
    out = rt("run", "-d", "--name", "joiner", "--net=container:owner", "--", "sleep", "300")
    assert out.returncode == 0
    assert owner_ip in rt("exec", "joiner", "--", "ip", "-br", "addr").stdout
    rt("rm", "-f", "joiner")  # a joiner never tears the owner's network down
    assert owner_ip in rt("exec", "owner", "--", "ip", "-br", "addr").stdout
    rt("run", "-d", "--name", "joiner2", "--net=container:owner", "--", "sleep", "300")
    rt("stop", "-t", "0", "owner")
    proc = rt("rm", "owner", check=False)  # stopped, but joiner2 still lives in its network
    assert proc.returncode == 1 and "share its network" in proc.stderr
    assert owner_ip in rt("exec", "joiner2", "--", "ip", "-br", "addr").stdout
    rt("rm", "-f", "owner")


def test_cmd_is_pid_1_with_own_proc_sys_and_hostname(rt: Runtime) -> None:
    rt("run", "-d", "--name", "p1", "--hostname", "box1", "--", "sleep", "300")
    assert rt("exec", "p1", "--", "cat", "/proc/1/cmdline").stdout.split("\0")[:2] == ["sleep", "300"]
    assert sorted(rt("exec", "p1", "--", "ls", "/sys/class/net").stdout.split()) == ["eth0", "lo"]
    assert rt("exec", "p1", "--", "hostname").stdout.strip() == "box1"
    assert rt("run", "--rm", "--", "sh", "-c", "echo $$").stdout.strip() == "1"


GRACE = 10  # `netkit stop`'s default, Docker's


def test_stop_kills_a_process_ignoring_sigterm_with_sigkill_after_the_grace_period(rt: Runtime) -> None:
    # PID 1 notes each SIGTERM in its log and carries on: it ignores SIGTERM, with evidence of receiving it.
    rt("run", "-d", "--name", "stubborn", "--", sys.executable, "-u", "-c",
       "import signal,time\n"
       "signal.signal(signal.SIGTERM, lambda s, f: print('got SIGTERM', flush=True))\n"
       "print('ready', flush=True)\n"
       "while True:\n    time.sleep(0.2)\n    print('alive', flush=True)")
    assert rt.wait_answer(lambda: "ready" in rt("logs", "stubborn").stdout)
    asked = time.monotonic()
    rt("stop", "stubborn", timeout=120)  # a hang guard only: the grace period is 10 s
    # A lower bound on elapsed time holds however loaded the machine is (load only adds time): SIGKILL
    # came no earlier than the grace period after the SIGTERM, which came after `asked`.
    assert time.monotonic() - asked >= GRACE
    log = rt("logs", "stubborn").stdout.splitlines()
    assert log.count("got SIGTERM") == 1, log          # SIGTERM first, once ...
    assert "alive" in log[log.index("got SIGTERM"):]   # ... it did not end the process ...
    assert "Exited (137)" in rt("ps", "-a").stdout     # ... SIGKILL did (128 + 9)


def test_stop_of_a_process_handling_sigterm_does_not_wait_for_the_grace_period(rt: Runtime) -> None:
    rt("run", "-d", "--name", "polite", "--", sys.executable, "-u", "-c",
       "import signal,sys,time\n"
       "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
       "print('ready', flush=True)\ntime.sleep(3600)")
    assert rt.wait_answer(lambda: "ready" in rt("logs", "polite").stdout)  # its handler is in place
    # A grace period of an hour: a stop that waited for it instead of for the process would hit the
    # hang guard; one that returns at all ended with the process.
    try:
        rt("stop", "-t", "3600", "polite", timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("`netkit stop -t 3600` was still waiting after PID 1 exited on SIGTERM")
    assert "Exited (0)" in rt("ps", "-a").stdout       # its own handler ended it, not SIGKILL (137)


def test_sigterm_to_foreground_run_reaches_the_command(rt: Runtime) -> None:
    proc = rt.popen("run", "--rm", "--", sys.executable, "-u", "-c",
                    "import signal,sys,time\n"
                    "signal.signal(signal.SIGTERM, lambda s, f: (print('got', s, flush=True), sys.exit(3)))\n"
                    "print('ready', flush=True)\ntime.sleep(300)")
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)  # a hang guard
    assert proc.returncode == 3 and "got 15" in out


def test_rm_and_auto_remove_leave_no_namespace_veth_lease_or_rule(rt: Runtime) -> None:
    rt("run", "-d", "--name", "gone", "-p", "8080:80", "--", "sleep", "300")
    rt("run", "--rm", "-p", "8081:80", "--", "true")
    rt("rm", "-f", "gone")
    rt.assert_nothing_left()


def test_a_dead_process_shows_as_exited_and_rm_still_releases(rt: Runtime) -> None:
    rt("run", "-d", "--name", "victim", "--", "sleep", "300")
    pid = rt.inspect("victim")["State"]["Pid"]
    os.kill(pid, signal.SIGKILL)
    assert rt.wait_answer(lambda: "Exited" in rt("ps", "-a").stdout)
    rt("rm", "victim")
    assert os.listdir(os.path.join(rt.root, "netns")) == []


def test_readable_errors(rt: Runtime) -> None:
    rt("run", "-d", "--name", "a", "-p", "8080:80", "--", "sleep", "300")
    cases = {
        ("run", "--net", "nosuch", "--", "true"): "network nosuch not found",
        ("run", "-p", "8080:80", "--", "true"): "already allocated",
        ("run", "--name", "a", "--", "true"): "already in use",
        ("run", "--", "no-such-command"): "executable file not found",
        ("rm", "nosuch"): "no such container",
    }
    for args, text in cases.items():
        proc = rt(*args, check=False)
        assert proc.returncode != 0 and text in proc.stderr and proc.stderr.count("\n") == 1, (args, proc.stderr)
        if text == "already allocated":  # failed in ADD, after its namespace and record were made: both undone
            assert len(os.listdir(os.path.join(rt.root, "netns"))) == 1 and rt("ps", "-a").stdout.count("\n") == 2
    argv = rt.argv("ps")
    unprivileged = argv[:2] + AS_NOBODY + argv[2:]
    proc = subprocess.run(unprivileged, capture_output=True, text=True)
    assert proc.returncode != 0 and "must run as root" in proc.stderr


def test_user_network_fixed_ip_isolation_and_rm(rt: Runtime) -> None:
    rt("network", "create", "--subnet", "10.55.0.0/24", "net1")
    assert "net1" in rt("network", "ls").stdout
    rt("run", "-d", "--name", "n1", "--net", "net1", "--ip", "10.55.0.50", "--", sys.executable, TRAFFIC, "serve", "n1", "80")
    assert rt.ip("n1") == "10.55.0.50"
    rt("run", "-d", "--name", "d1", "--", "sleep", "300")
    # The default network cannot reach net1's containers.  Controls: the host reaches n1's server, and
    # d1 reaches the host's address on net1's bridge (routed by the host, not forwarded).
    assert rt.wait_answer(lambda: (rt.box.host.ask("tcp", "10.55.0.50", 80) or "").startswith("n1 "))
    d1 = rt.netns("d1")
    assert d1.unanswered("tcp", "10.55.0.50", 80, control=d1.ping("10.55.0.1"))
    assert rt("network", "rm", "net1", check=False).returncode == 1
    rt("rm", "-f", "n1")
    rt("network", "rm", "net1")
    assert "net1" not in rt("network", "ls").stdout


def test_logs_and_system_prune(rt: Runtime) -> None:
    rt("run", "-d", "--name", "talker", "--", "sh", "-c", "echo hello from netkit")
    assert rt.wait_answer(lambda: "Exited (0)" in rt("ps", "-a").stdout)
    assert rt("logs", "talker").stdout == "hello from netkit\n"
    assert "removed talker" in rt("system", "prune").stdout
    assert rt("ps", "-a").stdout.count("\n") == 1


def test_two_runtimes_sharing_one_ipam_store_never_hand_out_an_address_twice(rt: Runtime) -> None:
    with second_runtime_sharing(rt, "10.44.0.0/24") as (other, shared):
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda job: job[0]("run", "-d", "--name", f"c{job[1]}", "--net", "shared", "--",
                                              "sleep", "300"),
                          [(r, i) for i in range(4) for r in (rt, other)]))
        addrs = [r.ip(f"c{i}") for r in (rt, other) for i in range(4)]

        def leases() -> list[str]:
            return sorted(f for f in os.listdir(os.path.join(shared, "shared")) if f[0].isdigit())

        assert len(set(addrs)) == 8 and leases() == sorted(addrs)
        # One runtime's prune must not collect the other's attachments (its GC list would be partial).
        rt("system", "prune")
        assert leases() == sorted(addrs)
        assert _exec_answer(rt, "c0", "ping", "-c", "1", "-W", "2", other.ip("c0")) is not None
        for r in (rt, other):
            r("rm", "-f", *[f"c{i}" for i in range(4)])
        assert leases() == []
        rt("network", "rm", "shared")
        assert "br-" in other("network", "ls").stdout  # the other runtime's network is untouched
        other("network", "rm", "shared")


def test_a_signal_for_a_runner_already_gone_is_no_error_of_the_supervisor() -> None:
    from netkit.runtime import containers

    gone = subprocess.Popen(["true"])
    gone.wait()  # reaped: no such process any more
    containers._signal(gone.pid, signal.SIGTERM)  # the supervisor's forwarding: no ProcessLookupError
