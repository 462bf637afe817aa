"""Several networks per container, in a sandbox host, with real traffic: `run --network a --network b`,
`network connect|disconnect`, aliases, inspect in Docker's shape, rm/prune over every endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.runtime.conftest import Runtime
from tests.sandbox import TRAFFIC

A_NET, B_NET = "10.61.0", "10.62.0"


def _networks(rt: Runtime) -> None:
    rt("network", "create", "--subnet", f"{A_NET}.0/24", "neta")
    rt("network", "create", "--subnet", f"{B_NET}.0/24", "netb")


def _serve(rt: Runtime, name: str, *nets: str) -> None:
    args = [a for n in nets for a in ("--network", n)]
    rt("run", "-d", "--name", name, *args, "--", sys.executable, TRAFFIC, "serve", name, "80")


def _routes(rt: Runtime, name: str) -> list[dict]:
    return json.loads(rt("exec", name, "--", "ip", "-j", "route").stdout)


def _leases(rt: Runtime, net: str) -> list[str]:
    d = os.path.join(rt.root, "ipam", net)
    return sorted(f for f in os.listdir(d) if f[0].isdigit()) if os.path.isdir(d) else []


def _fmt(rt: Runtime, fmt: str, *names: str) -> str:
    return rt("inspect", "--format", fmt, *names).stdout


def test_two_networks_reach_both_with_one_default_route_and_isolation_holds(rt: Runtime) -> None:
    _networks(rt)
    _serve(rt, "a1", "neta")
    _serve(rt, "b1", "netb")
    rt("run", "-d", "--name", "ab", "--network", "neta", "--network", "netb", "--network-alias", "both",
       "--", sys.executable, TRAFFIC, "serve", "ab", "80")
    a1, b1 = rt.ip("a1"), rt.ip("b1")
    ab = rt.inspect("ab")
    nets = ab["NetworkSettings"]["Networks"]
    assert sorted(nets) == ["neta", "netb"]
    assert (nets["neta"]["InterfaceName"], nets["netb"]["InterfaceName"]) == ("eth0", "eth1")
    ab_a, ab_b = nets["neta"]["IPAddress"], nets["netb"]["IPAddress"]
    assert ab_a.startswith(A_NET + ".") and ab_b.startswith(B_NET + ".")
    assert (nets["netb"]["Gateway"], nets["netb"]["IPPrefixLen"]) == (f"{B_NET}.1", 24)
    # The top-level keys are the first network's, as docker inspect shows them.
    settings = ab["NetworkSettings"]
    assert (settings["IPAddress"], settings["Gateway"], settings["MacAddress"]) == \
        (ab_a, f"{A_NET}.1", nets["neta"]["MacAddress"])
    mac = rt("exec", "ab", "--", "cat", "/sys/class/net/eth1/address").stdout.strip()
    assert nets["netb"]["MacAddress"] == mac
    assert nets["neta"]["Aliases"] == ["both", ab["Id"][:12]] and nets["netb"]["Aliases"] == [ab["Id"][:12]]
    assert nets["neta"]["DNSNames"] == ["ab", "both", ab["Id"][:12]]
    # One default route, through the first network's gateway; the second network only its subnet.
    defaults = [r for r in _routes(rt, "ab") if r["dst"] == "default"]
    assert defaults == [dict(defaults[0], gateway=f"{A_NET}.1", dev="eth0")] and len(defaults) == 1
    assert any(r["dst"] == f"{B_NET}.0/24" and r["dev"] == "eth1" for r in _routes(rt, "ab"))
    # ab reaches both networks' containers, and both reach it.
    abns = rt.netns("ab")
    assert rt.wait_answer(lambda: (abns.ask("tcp", a1, 80) or "").startswith("a1 "))
    assert (abns.ask("tcp", b1, 80) or "").startswith("b1 ")
    assert (rt.netns("b1").ask("tcp", ab_b, 80) or "").startswith("ab ")
    # A container on neta only does not reach netb's containers; controls: it reaches ab on neta, and
    # b1 answers on the path ab took.
    a1ns = rt.netns("a1")
    assert a1ns.unanswered("tcp", b1, 80, control=a1ns.ask("tcp", ab_a, 80))
    assert a1ns.unanswered("tcp", ab_b, 80, control=a1ns.ask("tcp", ab_a, 80))
    # network inspect lists every container on it with its address.
    on_b = json.loads(rt("network", "inspect", "netb").stdout)["Containers"]
    assert {c["Name"]: c["IPv4Address"] for c in on_b.values()} == {"b1": f"{b1}/24", "ab": f"{ab_b}/24"}
    assert on_b[ab["Id"]]["InterfaceName"] == "eth1"
    # inspect --format, as scripts written for docker inspect use it.
    assert _fmt(rt, "{{.NetworkSettings.IPAddress}}", "ab", "a1") == f"{ab_a}\n{a1}\n"
    assert _fmt(rt, '{{(index .NetworkSettings.Networks "netb").IPAddress}}', "ab") == f"{ab_b}\n"
    assert _fmt(rt, "{{range $n, $e := .NetworkSettings.Networks}}{{$n}}={{$e.IPAddress}} {{end}}", "ab") == \
        f"neta={ab_a} netb={ab_b} \n"
    assert json.loads(_fmt(rt, "{{json .NetworkSettings.Networks}}", "ab")) == nets
    # rm releases every endpoint: leases, veths, rule groups.
    rt("rm", "-f", "ab", "a1", "b1")
    assert _leases(rt, "neta") == [] and _leases(rt, "netb") == []
    assert [n for n in rt.box.host.links() if n.startswith("nk")] == []
    assert rt.box.group_chains() == []


def test_connect_and_disconnect_a_running_container(rt: Runtime) -> None:
    _networks(rt)
    _serve(rt, "a1", "neta")
    _serve(rt, "b1", "netb")
    rt("run", "-d", "--name", "c", "--network", "neta", "--", "sleep", "300")
    b1 = rt.ip("b1")
    cns = rt.netns("c")
    assert rt.wait_answer(lambda: rt.box.host.ask("tcp", b1, 80) is not None)
    assert cns.unanswered("tcp", b1, 80, control=cns.ask("tcp", rt.ip("a1"), 80))
    rt("network", "connect", "--ip", f"{B_NET}.77", "--alias", "cee", "netb", "c")
    assert f"{B_NET}.77/24" in rt("exec", "c", "--", "ip", "-br", "addr", "show", "eth1").stdout
    assert (cns.ask("tcp", b1, 80) or "").startswith("b1 ")
    assert [r["gateway"] for r in _routes(rt, "c") if r["dst"] == "default"] == [f"{A_NET}.1"]
    net = rt.inspect("c")["NetworkSettings"]["Networks"]["netb"]
    assert (net["IPAddress"], net["IPAMConfig"], net["Aliases"][0]) == (f"{B_NET}.77", {"IPv4Address": f"{B_NET}.77"},
                                                                         "cee")
    assert _leases(rt, "netb") == sorted([b1, f"{B_NET}.77"])
    hostname = rt.inspect("c")["Hostname"]
    assert f"{B_NET}.77\t{hostname}\n" in rt("exec", "c", "--", "cat", "/etc/hosts").stdout  # rewritten in place
    # Readable refusals, one line each.
    for args, text in {("network", "connect", "netb", "c"): "already exists in network netb",
                       ("network", "connect", "nosuch", "c"): "network nosuch not found",
                       ("network", "connect", "--alias", "x", "bridge", "c"): "user defined networks",
                       ("network", "disconnect", "bridge", "c"): "is not connected to network bridge",
                       ("network", "connect", "netb", "nosuch"): "no such container"}.items():
        proc = rt(*args, check=False)
        assert proc.returncode == 1 and text in proc.stderr and proc.stderr.count("\n") == 1, (args, proc.stderr)
    rt("network", "disconnect", "netb", "c")
    assert "eth1" not in rt("exec", "c", "--", "ls", "/sys/class/net").stdout
    assert f"{B_NET}.77" not in rt("exec", "c", "--", "cat", "/etc/hosts").stdout
    assert _leases(rt, "netb") == [b1]
    assert cns.unanswered("tcp", b1, 80, control=cns.ask("tcp", rt.ip("a1"), 80))
    assert list(rt.inspect("c")["NetworkSettings"]["Networks"]) == ["neta"]
    # Connected again: the next free interface name, and the network can be removed only once it is left.
    rt("network", "connect", "netb", "c")
    assert list(rt.inspect("c")["NetworkSettings"]["Networks"]) == ["neta", "netb"]
    rt("rm", "-f", "b1")
    assert rt("network", "rm", "netb", check=False).returncode == 1
    rt("rm", "-f", "c", "a1")
    rt("network", "rm", "netb")
    assert _leases(rt, "neta") == [] and rt.box.group_chains() == []


def test_host_mode_cannot_be_connected_and_modes_do_not_mix(rt: Runtime) -> None:
    _networks(rt)
    rt("run", "-d", "--name", "h", "--net", "host", "--", "sleep", "300")
    proc = rt("network", "connect", "neta", "h", check=False)
    assert proc.returncode == 1 and "network mode host" in proc.stderr
    assert rt("inspect", "-f", "{{.NetworkSettings.Networks.host.IPAddress}}|{{.NetworkMode}}", "h").stdout == "|host\n"
    proc = rt("inspect", "-f", '{{printf "%s" .Name}}', "h", check=False)
    assert proc.returncode == 1 and proc.stdout == "" and proc.stderr.count("\n") == 1
    assert 'function "printf" is not supported' in proc.stderr
    for args, text in {("--network", "neta", "--network", "host"): "conflicting options",
                       ("--network", "neta", "--network", "neta"): "network given twice",
                       ("--network-alias", "x"): "user defined networks",
                       ("--network", "neta", "--network", "nosuch"): "network nosuch not found",
                       ("--network", "name=neta,mtu=9000"): "invalid network option 'mtu=9000'",
                       ("--network", "name=neta,ip=10.61.0.9", "--ip", "10.61.0.8"): "conflicting options",
                       ("--network", "neta", "--network", "name=bridge,ip=172.17.9.9"): "user defined networks only",
                       ("--network", "neta", "--network-alias", "bad alias"): "invalid network alias"}.items():
        proc = rt("run", "--rm", *args, "--", "true", check=False)
        assert proc.returncode == 1 and text in proc.stderr and proc.stderr.count("\n") == 1, (args, proc.stderr)
    # Nothing was made for the refused runs (a host-mode container has no namespace of its own).
    assert _leases(rt, "neta") == [] and os.listdir(os.path.join(rt.root, "netns")) == []


def test_a_failed_second_attachment_takes_the_first_back(rt: Runtime) -> None:
    _networks(rt)
    rt("network", "create", "--subnet", "10.63.0.0/30", "tiny")  # one address besides the gateway
    rt("run", "-d", "--name", "first", "--network", "tiny", "--", "sleep", "300")
    proc = rt("run", "-d", "--name", "second", "--network", "neta", "--network", "tiny", "--", "sleep", "300",
              check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert _leases(rt, "neta") == [] and rt("ps", "-a").stdout.count("\n") == 2  # the header and first
    assert len(os.listdir(os.path.join(rt.root, "netns"))) == 1  # first's only
    rt("rm", "-f", "first")
    assert _leases(rt, "tiny") == [] and os.listdir(os.path.join(rt.root, "netns")) == []
    assert [n for n in rt.box.host.links() if n.startswith("nk")] == [] and rt.box.group_chains() == []


def test_prune_collects_per_endpoint_and_keeps_every_live_ones(rt: Runtime) -> None:
    _networks(rt)
    rt("run", "-d", "--name", "live", "--network", "neta", "--network", "netb", "--", "sleep", "300")
    rt("run", "-d", "--name", "gone", "--network", "netb", "--network", "neta", "--", "true")
    assert rt.wait_answer(lambda: "Exited (0)" in rt("ps", "-a").stdout)
    live = rt.inspect("live")["NetworkSettings"]["Networks"]
    assert "removed gone" in rt("system", "prune").stdout
    assert _leases(rt, "neta") == [live["neta"]["IPAddress"]] and _leases(rt, "netb") == [live["netb"]["IPAddress"]]
    assert sorted(rt("exec", "live", "--", "ls", "/sys/class/net").stdout.split()) == ["eth0", "eth1", "lo"]
    rt("rm", "-f", "live")
    assert _leases(rt, "neta") == [] and _leases(rt, "netb") == []


# A plugin chained after the bridge that writes down what it was given (as netkit-dns will be), in the
# root's own plugin directory: the aliases capability the runtime passes, per network and interface.
RECORDER = """#!{python}
import json, os, sys
conf = json.load(sys.stdin)
with open({log!r}, "a") as f:
    f.write(json.dumps([os.environ["CNI_COMMAND"], conf["name"], os.environ["CNI_IFNAME"], os.environ["CNI_ARGS"],
                        conf.get("runtimeConfig", {{}})]) + "\\n")
if os.environ["CNI_COMMAND"] == "ADD":
    print(json.dumps(conf["prevResult"]))
"""


def _record_plugin_calls(rt: Runtime, *nets: str) -> str:
    log = os.path.join(rt.root, "recorder.log")
    path = os.path.join(rt.root, "bin", "test-recorder")
    with open(path, "w", encoding="utf-8") as f:
        f.write(RECORDER.format(python=sys.executable, log=log))
    os.chmod(path, 0o755)
    for net in nets:
        conf_path = os.path.join(rt.root, "networks", f"{net}.conflist")
        with open(conf_path, encoding="utf-8") as f:
            conf = json.load(f)
        conf["plugins"].append({"type": "test-recorder", "capabilities": {"aliases": True}})
        with open(conf_path, "w", encoding="utf-8") as f:
            json.dump(conf, f)
    return log


def _calls(log: str) -> list[list]:
    with open(log, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_dns_aliases_go_to_the_plugins_per_network_with_the_short_id(rt: Runtime) -> None:
    _networks(rt)
    log = _record_plugin_calls(rt, "neta", "netb")
    # Docker's long form gives the second network its own aliases and address.
    rt("run", "-d", "--name", "web", "--network", "neta", "--network", f"name=netb,alias=db,ip={B_NET}.40",
       "--network-alias", "www", "--network-alias", "front", "--", "sleep", "300")
    shown = rt.inspect("web")
    short = shown["Id"][:12]
    assert shown["NetworkSettings"]["Networks"]["netb"]["IPAddress"] == f"{B_NET}.40"
    adds = [c for c in _calls(log) if c[0] == "ADD"]
    assert [(net, ifname, rc) for _, net, ifname, _, rc in adds] == [
        ("neta", "eth0", {"aliases": {"neta": ["www", "front", short]}}),
        ("netb", "eth1", {"aliases": {"netb": ["db", short]}})]
    assert all("K8S_POD_NAME=web" in args.split(";") for _, _, _, args, _ in adds)  # the name, as podman
    rt("network", "connect", "--alias", "late", "bridge", "web", check=False)  # the default bridge: no aliases
    rt("network", "disconnect", "netb", "web")
    rt("network", "connect", "--alias", "api", "netb", "web")
    rt("rm", "-f", "web")
    calls = [(cmd, net, ifname, rc) for cmd, net, ifname, _, rc in _calls(log)[2:]]
    assert calls == [("DEL", "netb", "eth1", {"aliases": {"netb": ["db", short]}}),
                     ("ADD", "netb", "eth1", {"aliases": {"netb": ["api", short]}}),
                     ("DEL", "netb", "eth1", {"aliases": {"netb": ["api", short]}}),
                     ("DEL", "neta", "eth0", {"aliases": {"neta": ["www", "front", short]}})]


def test_disconnecting_the_first_network_moves_the_default_route_to_the_next(rt: Runtime) -> None:
    _networks(rt)
    rt("network", "create", "--internal", "--subnet", "10.64.0.0/24", "inner")
    _serve(rt, "b1", "netb")
    rt("run", "-d", "--name", "c", "--network", "neta", "--network", "netb", "--network", "inner", "--",
       "sleep", "300")
    rt("network", "disconnect", "neta", "c")
    assert [(r["gateway"], r["dev"]) for r in _routes(rt, "c") if r["dst"] == "default"] == [(f"{B_NET}.1", "eth1")]
    shown = rt.inspect("c")["NetworkSettings"]
    assert shown["IPAddress"] == shown["Networks"]["netb"]["IPAddress"] and shown["Gateway"] == f"{B_NET}.1"
    assert (rt.netns("c").ask("tcp", rt.ip("b1"), 80) or "").startswith("b1 ")
    # An internal network gives no default route, even once it is the only one left.
    rt("network", "disconnect", "netb", "c")
    assert [r for r in _routes(rt, "c") if r["dst"] == "default"] == []
    assert rt.inspect("c")["NetworkSettings"]["Networks"]["inner"]["InterfaceName"] == "eth2"
    rt("network", "disconnect", "inner", "c")
    assert rt.inspect("c")["NetworkSettings"]["Networks"] == {}
    # Connected again after every network was left: the new network is the primary, default route and all.
    rt("network", "connect", "netb", "c")
    assert [(r["gateway"], r["dev"]) for r in _routes(rt, "c") if r["dst"] == "default"] == [(f"{B_NET}.1", "eth0")]
    shown = rt.inspect("c")["NetworkSettings"]
    assert shown["IPAddress"] == shown["Networks"]["netb"]["IPAddress"] and shown["Gateway"] == f"{B_NET}.1"
    assert (rt.netns("c").ask("tcp", rt.ip("b1"), 80) or "").startswith("b1 ")
    rt("rm", "-f", "c", "b1")
    assert all(_leases(rt, n) == [] for n in ("neta", "netb", "inner")) and rt.box.group_chains() == []


def test_published_ports_go_to_the_first_network(rt: Runtime) -> None:
    _networks(rt)
    rt("run", "-d", "--name", "pub", "--network", "netb", "--network", "neta", "-p", "8080:80", "--",
       sys.executable, TRAFFIC, "serve", "pub", "80")
    first = rt.inspect("pub")["NetworkSettings"]["Networks"]["netb"]["IPAddress"]
    assert rt.wait_answer(lambda: (rt.box.host.ask("tcp", "127.0.0.1", 8080) or "").startswith("pub "))
    assert rt("port", "pub").stdout == "80/tcp -> 0.0.0.0:8080\n"
    assert first.startswith(B_NET + ".")
    # The port mappings went to the first network's attachment only (libcni's cache holds what was passed).
    cid = rt.inspect("pub")["Id"]
    cached = {}
    for net, ifname in (("netb", "eth0"), ("neta", "eth1")):
        with open(os.path.join(rt.root, "cni-cache", "results", f"{net}-{cid}-{ifname}"), encoding="utf-8") as f:
            cached[net] = json.load(f)["capabilityArgs"]["portMappings"]
    assert [m["hostPort"] for m in cached["netb"]] == [8080] and cached["neta"] == []
    rt("rm", "-f", "pub")
    assert rt.box.group_chains() == [] and _leases(rt, "neta") == [] and _leases(rt, "netb") == []


def _network_chains(rt: Runtime) -> list[str]:
    """The isolation chains (NK-N-) of the backend the sandbox chose, read from that backend only."""
    if rt.box.firewall == "nftables":
        out = rt.box.host.run("nft", "-j", "list", "table", "inet", "netkit").stdout or '{"nftables": []}'
        return [o["chain"]["name"] for o in json.loads(out)["nftables"] if "chain" in o
                and o["chain"]["name"].startswith("NK-N-")]
    out = rt.box.host.run("iptables-legacy-save", "-t", "filter").stdout
    return [line[1:].split()[0] for line in out.splitlines() if line.startswith(":NK-N-")]


def test_isolation_between_networks_holds_on_both_firewall_backends(fw_rt: Runtime) -> None:
    rt = fw_rt
    _networks(rt)
    _serve(rt, "a1", "neta")
    _serve(rt, "b1", "netb")
    _serve(rt, "ab", "neta", "netb")
    assert len(_network_chains(rt)) >= 2  # both networks' isolation is in the backend under test
    a1, b1 = rt.ip("a1"), rt.ip("b1")
    nets = rt.inspect("ab")["NetworkSettings"]["Networks"]
    abns, a1ns, b1ns = rt.netns("ab"), rt.netns("a1"), rt.netns("b1")
    assert rt.wait_answer(lambda: (abns.ask("tcp", a1, 80) or "").startswith("a1 "))
    assert (abns.ask("tcp", b1, 80) or "").startswith("b1 ")
    assert a1ns.unanswered("tcp", b1, 80, control=a1ns.ask("tcp", nets["neta"]["IPAddress"], 80))
    assert b1ns.unanswered("tcp", a1, 80, control=b1ns.ask("tcp", nets["netb"]["IPAddress"], 80))
    rt("rm", "-f", "ab", "a1", "b1")
    assert rt.box.group_chains() == [] and _leases(rt, "neta") == [] and _leases(rt, "netb") == []


def test_disconnecting_the_network_of_published_ports_is_refused(rt: Runtime) -> None:
    _networks(rt)
    rt("run", "-d", "--name", "pub", "--network", "netb", "--network", "neta", "-p", "8081:80", "--",
       sys.executable, TRAFFIC, "serve", "pub", "80")
    proc = rt("network", "disconnect", "netb", "pub", check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "80/tcp -> 0.0.0.0:8081" in proc.stderr
    assert sorted(rt.inspect("pub")["NetworkSettings"]["Networks"]) == ["neta", "netb"]
    assert rt.wait_answer(lambda: (rt.box.host.ask("tcp", "127.0.0.1", 8081) or "").startswith("pub "))
    rt("network", "disconnect", "neta", "pub")  # not the ports' network: fine
    assert rt("port", "pub").stdout == "80/tcp -> 0.0.0.0:8081\n"
    rt("rm", "-f", "pub")
    assert _leases(rt, "neta") == _leases(rt, "netb") == [] and rt.box.group_chains() == []


# A connect that lands between a command's first read of a record and its write: the runtime is driven
# in one process with the step in between replaced by one that connects, so the interleaving is certain.
RACES = """
import sys
from netkit.runtime import containers, endpoints, process, state
from netkit.runtime.root import Root

root, which = Root(sys.argv[1]), sys.argv[2]
if which == "rm":
    waited = containers._wait_dead
    def connect_then_wait(ctr, timeout):
        endpoints.connect(root, ctr.id, "netb")
        return waited(ctr, timeout)
    containers._wait_dead = connect_then_wait
    containers.remove(root, "c", force=True)
else:
    spawn = process.spawn
    def spawn_then_connect(spec):
        out = spawn(spec)
        endpoints.connect(root, "s", "netb")
        return out
    process.spawn = spawn_then_connect
    ctr, code = containers.run(root, containers.RunOptions(["true"], network="neta", name="s"))
    assert code == 0
    print(",".join(ep.network for ep in state.load(root, ctr.id).endpoints))
"""


def _race(rt: Runtime, which: str) -> str:
    argv = ["nsenter", f"--net={rt.box.host.path}", sys.executable, "-c", RACES, rt.root, which]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=rt.env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_a_connect_meanwhile_is_neither_undone_by_the_supervisor_nor_leaked_by_rm(rt: Runtime) -> None:
    _networks(rt)
    rt("run", "-d", "--name", "c", "--network", "neta", "--", "sleep", "300")
    _race(rt, "rm")  # rm read the record, then c was connected to netb: its lease there goes too
    assert _leases(rt, "neta") == _leases(rt, "netb") == []
    assert _race(rt, "run") == "neta,netb\n"  # the supervisor's "running" does not drop the new endpoint
    rt("rm", "-f", "s")
    assert _leases(rt, "neta") == _leases(rt, "netb") == [] and rt.box.group_chains() == []


def test_inspect_exit_code_of_a_running_container_and_a_misused_field(rt: Runtime) -> None:
    rt("run", "-d", "--name", "up", "--", "sleep", "300")
    assert _fmt(rt, "{{.State.ExitCode}} {{json .State.ExitCode}}", "up") == "0 0\n"  # Docker's 0, not <nil>
    proc = rt("inspect", "--format", "{{.Name 1}}", "up", check=False)
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1 and ".Name is not a function" in proc.stderr, \
        proc.stderr
    rt("rm", "-f", "up")
