"""`netkit run --init / --add-host / --dns-search / --dns-option / --mac-address`, network MTU and
``--internal``, in a sandbox host with real namespaces."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests import reach
from tests.runtime.conftest import Runtime
from tests.runtime.test_thin import Via, ways  # noqa: F401 - ways: the fixture, served and direct
from tests.sandbox import Sandbox, bridge_conf

HOST, MACHINE = "10.30.0.1", "10.30.0.2"
# Every process of the container's PID namespace as "STATE:COMM" (read from inside, through exec).
PROCS = ("import os\n"
         "for p in sorted(int(d) for d in os.listdir('/proc') if d.isdigit()):\n"
         "    try:\n"
         "        stat = open(f'/proc/{p}/stat').read()\n"
         "    except OSError:\n"
         "        continue\n"
         "    print(stat.rsplit(')', 1)[1].split()[0] + ':' + stat.split('(', 1)[1].rsplit(')', 1)[0])")


def _one_line_error(rt: Runtime, *args: str) -> str:
    proc = rt(*args, check=False)
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1 and "netkit: error:" in proc.stderr, proc.stderr
    return proc.stderr


def _procs(rt: Runtime, name: str) -> list[str]:
    return rt("exec", name, "--", sys.executable, "-c", PROCS).stdout.split()


def _listening(rt: Runtime, name: str) -> bool:
    """True once the container's port 80 takes a connection from the host."""
    probe = f"import socket; socket.create_connection(({rt.ip(name)!r}, 80), 2)"
    return rt.box.host.run(sys.executable, "-c", probe).returncode == 0


def test_init_gets_sigterm_to_a_command_that_ignores_it_as_pid_1(rt: Runtime) -> None:
    # `python3 -m http.server` installs no SIGTERM handler: as PID 1 the kernel never delivers it SIGTERM.
    rt("run", "-d", "--init", "--name", "web", "--", "python3", "-m", "http.server", "80")
    assert rt.wait_answer(lambda: _listening(rt, "web"))
    procs = _procs(rt, "web")
    assert procs[0].endswith(":netkit-init") and "python3" in " ".join(procs[1:])
    # A grace period of an hour: only a stop that returns when the command ends returns at all (the
    # hang guard would fire), and 143 = 128 + SIGTERM: the signal ended the command, not SIGKILL (137).
    rt("stop", "-t", "3600", "web", timeout=120)
    assert "Exited (143)" in rt("ps", "-a").stdout
    # Control: the same server as PID 1 without --init outlives SIGTERM; SIGKILL ends it.
    rt("run", "-d", "--name", "bare", "--", "python3", "-m", "http.server", "80")
    assert rt.wait_answer(lambda: _listening(rt, "bare"))
    rt("stop", "-t", "1", "bare", timeout=120)
    assert "Exited (137)" in rt("ps", "-a").stdout


def test_init_through_the_runtime_server_and_without_it(ways: tuple[Via, Via]) -> None:  # noqa: F811 - fixture
    # `sleep` has no handler for SIGTERM: as PID 1 it would never see the signal, behind an init it dies
    # of it (143), whether the command runs in the runtime server's forked child or in its own process.
    for rt in ways:
        proc = rt.popen("run", "--rm", "--init", "--net=none", "--", "sh", "-c", "echo ready; exec sleep 300")
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)  # a hang guard
        assert proc.returncode == 143, err
        rt("run", "-d", "--init", "--name", "bg", "--net=none", "--", "sleep", "300")
        rt("stop", "-t", "3600", "bg", timeout=120)
        assert "Exited (143)" in rt("ps", "-a").stdout
        rt("rm", "bg")


ORPHAN = """
import os
if os.fork() == 0:
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", "0.3"])
    os._exit(0)
os.wait()
os.execvp("sleep", ["sleep", "300"])
"""


def test_init_reaps_orphans_and_exits_with_the_commands_status(rt: Runtime) -> None:
    assert rt("run", "--rm", "--init", "--", sys.executable, "-c", "raise SystemExit(7)", check=False).returncode == 7
    proc = rt("run", "--rm", "--init", "--", "no-such-command", check=False)
    assert proc.returncode != 0 and "executable file not found" in proc.stderr
    # A child leaves a short sleep behind and ends: the orphan is reparented to PID 1.  The command
    # then becomes `sleep 300`, which never waits for children.
    orphan = [sys.executable, "-c", ORPHAN]
    rt("run", "-d", "--init", "--name", "reaper", "--", *orphan)
    rt("run", "-d", "--name", "noinit", "--", *orphan)
    # Without an init the orphan ends as a zombie, kept for good ...
    assert rt.wait_answer(lambda: "Z:sleep" in _procs(rt, "noinit"))
    # ... with one it is reaped: left are the init, `sleep 300` and this probe.
    def reaped() -> bool:
        procs = _procs(rt, "reaper")
        return procs[0].endswith(":netkit-init") and not any(p.startswith("Z") for p in procs) \
            and sum(p.endswith(":sleep") for p in procs) == 1
    assert rt.wait_answer(reaped)


# The init's own loop fails (here: made to raise) inside a caller that, like process._init, reports
# whatever escapes and exits 127: the init must end by itself, with 255.
BROKEN_INIT = """
import os
from netkit.runtime import init

def broken(child, waited):
    raise RuntimeError("broken")

init._serve = broken
try:
    init.become()
    os._exit(0)  # CMD's process: nothing to run
except BaseException:
    os._exit(127)
"""


def test_an_error_in_the_init_itself_ends_pid_1_with_255_not_in_its_caller() -> None:
    proc = subprocess.run([sys.executable, "-c", BROKEN_INIT], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 255 and "netkit-init: RuntimeError('broken')" in proc.stderr, proc


def test_add_host_ip_and_host_gateway(rt: Runtime) -> None:
    rt("network", "create", "--subnet", "10.56.0.0/24", "hg")
    rt("run", "-d", "--name", "c", "--net", "hg", "--add-host", "db:10.1.2.3", "--add-host", "gw:host-gateway",
       "--add-host", "six:[fd00::1]", "--", "sleep", "300")
    hosts = rt("exec", "c", "--", "cat", "/etc/hosts").stdout
    assert "10.1.2.3\tdb\n" in hosts and "10.56.0.1\tgw\n" in hosts and "fd00::1\tsix\n" in hosts
    assert f"{rt.ip('c')}\t" in hosts and "127.0.0.1\tlocalhost" in hosts
    # The C library's resolver finds them, and host-gateway is the host: it answers on that address.
    assert rt("exec", "c", "--", "getent", "hosts", "gw").stdout.split() == ["10.56.0.1", "gw"]
    got = reach.first_answer(lambda: "up" if rt("exec", "c", "--", "ping", "-c1", "-W2", "gw",
                                               check=False).returncode == 0 else None)
    assert got == "up"
    # On the default bridge host-gateway is that bridge's gateway.
    rt("run", "-d", "--name", "d", "--add-host", "host.docker.internal:host-gateway", "--", "sleep", "300")
    ipam = json.loads(rt("network", "inspect", "bridge").stdout)["Config"]["plugins"][0]["ipam"]
    gateway = ipam["ranges"][0][0]["gateway"]
    assert f"{gateway}\thost.docker.internal\n" in rt("exec", "d", "--", "cat", "/etc/hosts").stdout
    assert "needs a bridge network" in _one_line_error(rt, "run", "--net", "none", "--add-host", "x:host-gateway",
                                                        "--", "true")
    assert "invalid IP address" in _one_line_error(rt, "run", "--add-host", "x:1.2.3", "--", "true")
    # A joiner has its owner's network, names and resolver (Docker's rule).
    assert "conflicting options" in _one_line_error(rt, "run", "--net", "container:c", "--add-host", "x:10.0.0.1",
                                                    "--", "true")


def test_add_host_in_host_mode_goes_on_top_of_the_hosts_file(rt: Runtime) -> None:
    with open("/etc/hosts", encoding="utf-8") as f:
        first = f.read().splitlines()[0]
    out = rt("run", "--rm", "--net", "host", "--add-host", "extra:10.9.9.9", "--", "cat", "/etc/hosts").stdout
    assert out.splitlines()[0] == first and out.endswith("10.9.9.9\textra\n")


def test_dns_search_and_options_compose_resolv_conf(rt: Runtime) -> None:
    out = rt("run", "--rm", "--dns", "10.0.0.53", "--dns-search", "example.test", "--dns-search", "corp.test",
             "--dns-option", "ndots:2", "--dns-option", "timeout:1", "--", "cat", "/etc/resolv.conf").stdout
    assert out == "nameserver 10.0.0.53\nsearch example.test corp.test\noptions ndots:2 timeout:1\n"
    # Without --dns the host's nameservers stay (loopback ones are not reachable from the container).
    with open("/etc/resolv.conf", encoding="utf-8") as f:
        host = [w[1] for w in map(str.split, f) if w[:1] == ["nameserver"] and not w[1].startswith("127.")]
    out = rt("run", "--rm", "--dns-search", "only.test", "--", "cat", "/etc/resolv.conf").stdout
    assert [line.split()[1] for line in out.splitlines() if line.startswith("nameserver")] == host
    assert "search only.test\n" in out
    plain = rt("run", "--rm", "--", "cat", "/etc/resolv.conf").stdout  # nothing asked: the host's, filtered
    assert [line.split()[1] for line in plain.splitlines() if line.startswith("nameserver")] == host
    assert "search" not in rt("run", "--rm", "--dns", "10.0.0.53", "--dns-search", ".", "--",
                              "cat", "/etc/resolv.conf").stdout
    assert "invalid --dns-option" in _one_line_error(rt, "run", "--dns-option", "a b", "--", "true")
    assert "foo is not an ip address" in _one_line_error(rt, "run", "--dns", "foo", "--", "true")
    assert "is not an ip address" in _one_line_error(rt, "run", "--dns", "10.0.0.53\nnameserver 6.6.6.6", "--", "true")


def test_mac_address(rt: Runtime) -> None:
    rt("run", "-d", "--name", "m", "--mac-address", "02:42:AC:11:00:99", "--", "sleep", "300")
    assert rt("exec", "m", "--", "cat", "/sys/class/net/eth0/address").stdout.strip() == "02:42:ac:11:00:99"
    assert rt.wait_answer(lambda: rt.box.host.ping(rt.ip("m")) is not None)  # and the address works
    assert "invalid MAC address" in _one_line_error(rt, "run", "--mac-address", "02:42:ac:11:00", "--", "true")
    assert "multicast" in _one_line_error(rt, "run", "--mac-address", "01:00:5e:00:00:01", "--", "true")
    assert "conflicting options" in _one_line_error(rt, "run", "--net", "host", "--mac-address", "02:42:ac:11:00:98",
                                                    "--", "true")


def _mtu(ns_run: object, ifname: str) -> int:
    out = ns_run("ip", "-j", "link", "show", ifname).stdout  # type: ignore[operator]
    return json.loads(out)[0]["mtu"]


@pytest.mark.parametrize("how", [("--mtu", "1400"), ("-o", "mtu=1400"), ("-o", "com.docker.network.driver.mtu=1400")])
def test_network_mtu_on_bridge_veth_and_container(rt: Runtime, how: tuple[str, str]) -> None:
    rt("network", "create", "--subnet", "10.58.0.0/24", *how, "small")
    rt("run", "-d", "--name", "s", "--net", "small", "--", "sleep", "300")
    bridge = json.loads(rt("network", "inspect", "small").stdout)["Config"]["plugins"][0]["bridge"]
    assert _mtu(rt.box.host.run, bridge) == 1400
    host_veths = [n for n in rt.box.host.links() if n.startswith("nk")]
    assert host_veths and all(_mtu(rt.box.host.run, v) == 1400 for v in host_veths)
    inside = rt.netns("s")
    assert _mtu(inside.run, "eth0") == 1400
    # A full-size unfragmentable packet passes; one byte more does not leave the container.
    assert reach.first_answer(lambda: "ok" if inside.run("ping", "-c1", "-W2", "-M", "do", "-s", "1372",
                                                         "10.58.0.1").returncode == 0 else None) == "ok"
    assert inside.run("ping", "-c1", "-W2", "-M", "do", "-s", "1373", "10.58.0.1").returncode != 0


def test_network_mtu_is_checked(rt: Runtime) -> None:
    assert "invalid MTU" in _one_line_error(rt, "network", "create", "-o", "mtu=20", "tiny")
    assert "invalid MTU" in _one_line_error(rt, "network", "create", "-o", "mtu=big", "tiny")
    # Below 1280 the kernel disables IPv6 on the link: refused on a network with an IPv6 subnet ...
    for args in (("--ipv6",), ("--subnet", "10.58.0.0/24", "--subnet", "fd00:58::/64")):
        assert "needs at least 1280" in _one_line_error(rt, "network", "create", "--mtu", "1279", *args, "tiny6")
    # ... fine on an IPv4-only one, and 1280 with IPv6.
    rt("network", "create", "--mtu", "1279", "tiny4")
    rt("network", "create", "--mtu", "1280", "--ipv6", "min6")
    rt("network", "rm", "tiny4")
    rt("network", "rm", "min6")
    assert "tiny" not in rt("network", "ls").stdout


def test_internal_network_refuses_ports_and_forwards_nothing_out(rt: Runtime) -> None:
    x = rt.box.machine([HOST], MACHINE)
    rt("network", "create", "--internal", "--subnet", "10.57.0.0/24", "inside")
    rt("network", "create", "--subnet", "10.59.0.0/24", "outside")
    err = _one_line_error(rt, "run", "--net", "inside", "-p", "8080:80", "--", "true")
    assert "internal network inside" in err
    assert os.listdir(os.path.join(rt.root, "netns")) == [] and rt("ps", "-a").stdout.count("\n") == 1
    for net in ("inside", "outside"):
        rt("run", "-d", "--name", net, "--net", net, "--", "sleep", "300")
    i, o = rt.netns("inside"), rt.netns("outside")
    assert "default" not in i.run("ip", "route").stdout  # no route out ...
    # ... and none made by hand gets out either: the machine routes both subnets back through the host,
    # so nothing but the host's drop stands between the internal container and the machine.
    x.run("ip", "route", "add", "10.57.0.0/24", "via", HOST, check=True)
    x.run("ip", "route", "add", "10.59.0.0/24", "via", HOST, check=True)
    i.run("ip", "route", "add", "default", "via", "10.57.0.1", check=True)
    assert o.ping(MACHINE) is not None  # a normal network's container reaches the machine
    assert i.unreachable(MACHINE, control=i.ping("10.57.0.1"))  # the internal one reaches its gateway only


def test_internal_bridge_forwards_nothing_off_the_bridge_on_both_backends(fw_box: Sandbox) -> None:
    # The plugin alone, on each firewall backend: the internal network's container has a default route
    # (as if its root added one) and the machine routes both subnets back through the host, no NAT on
    # either: the host's drop rule is all that keeps the internal one in.
    x = fw_box.machine([HOST], MACHINE)
    x.run("ip", "route", "add", "10.20.0.0/24", "via", HOST, check=True)
    x.run("ip", "route", "add", "10.21.0.0/24", "via", HOST, check=True)
    inside = bridge_conf(fw_box, internal=True)
    outside = bridge_conf(fw_box, name="othernet", bridge="nkbr1", subnet="10.21.0.0/24")
    a, a2, b = fw_box.container(), fw_box.container(), fw_box.container()
    for conf, ns in ((inside, a), (inside, a2), (outside, b)):
        rc, out = fw_box.call("netkit-bridge", "ADD", conf, ns)
        assert rc == 0, out
    assert b.ping(MACHINE) is not None  # the path out through the host works for a normal network
    neighbour = a2.run("ip", "-4", "-o", "addr", "show", "eth0").stdout.split()[3].split("/")[0]
    assert a.ping(neighbour) is not None  # containers of the internal network reach each other
    assert a.unreachable(MACHINE, control=a.ping("10.20.0.1"))  # and the host, but nothing beyond it
    # Nor does anything get in: the machine reaches the normal network's container, not the internal one's.
    address = a.run("ip", "-4", "-o", "addr", "show", "eth0").stdout.split()[3].split("/")[0]
    outside_address = b.run("ip", "-4", "-o", "addr", "show", "eth0").stdout.split()[3].split("/")[0]
    assert x.unreachable(address, control=x.ping(outside_address))
    assert fw_box.host.ping(address) is not None  # the host itself still does (not forwarded)
    for conf, ns in ((inside, a), (inside, a2), (outside, b)):
        assert fw_box.call("netkit-bridge", "DEL", conf, ns)[0] == 0
