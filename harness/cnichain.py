"""CNI plugin calls as the benchmarks make them: exec'd inside a sandbox host, timed from spawn to
exit; one bridge network's configs, the bridge+ipam+portmap chain libcni runs for a conflist, and
what the sandbox host holds afterwards (read only, never timed)."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any

from harness.bench import REFERENCE_BIN, BenchError, timed
from harness.hostns import Netns

GNU_TIME = "/usr/bin/time"
# Per-attachment chains: netkit's NK-D-*/NK-M-*, the reference's CNI-DN-<hash>/CNI-<hash>.
ATTACHMENT_CHAIN = re.compile(r"\b(NK-[DM]-[\w-]+|CNI-(?:DN-)?[0-9a-f]{16,})\b")


def dnat_ports(text: str, floor: int = 0) -> set[int]:
    """Ports above ``floor`` with a DNAT in NAT rules as nft ("tcp dport P") or iptables-save ("--dport P") list them."""
    return {int(p) for p in re.findall(r"dport\s+(\d+)\b", text) if int(p) > floor}


def attachment_chains(text: str) -> list[str]:
    """The per-attachment chains named in NAT rules (nft or iptables-save text)."""
    return sorted(set(ATTACHMENT_CHAIN.findall(text)))


@dataclass
class Exec:
    """One timed command: ms from spawn to exit, exit status, outputs."""

    ms: float
    code: int
    out: str
    err: str
    maxrss_kib: int = 0  # with rss=True: GNU time's %M, the peak RSS of `ip netns exec` + the plugin

    def json(self) -> Any:
        """stdout as JSON ({} if it is none)."""
        try:
            return json.loads(self.out)
        except ValueError:
            return {}

    def why(self) -> str:
        """For an error message: the status and the start of both outputs."""
        return f"exit {self.code}: stdout {self.out[:400]!r} stderr {self.err[:400]!r}"


def exec_in(host: str, argv: list[str], env: dict[str, str], stdin: bytes, rss: bool = False) -> Exec:
    """``ip netns exec HOST argv`` (harness.bench.timed): wall time from spawn to exit, its outputs.

    With ``rss`` the command runs under ``/usr/bin/time -f %M``, which reports its peak RSS (not
    wait4 on our own child: Python spawns with vfork, so a child's ru_maxrss starts at this script's
    own RSS; time(1) is a small C program, so the child it forks starts small).
    """
    full = ["ip", "netns", "exec", host, *argv]
    if not rss:
        return Exec(*timed(full, env, stdin=stdin, own_session=False)[:4])
    with tempfile.NamedTemporaryFile("r", prefix="rss-") as fh:
        ms, code, out, err, _ = timed([GNU_TIME, "-f", "%M", "-o", fh.name, *full], env, stdin=stdin,
                                      own_session=False)
        words = fh.read().split()
    if not words or not words[-1].isdigit():
        raise BenchError(f"{GNU_TIME} gave no %M for {argv}: {words!r}")
    return Exec(ms, code, out, err, int(words[-1]))


class Network:
    """One bridge network of one implementation (netkit or the reference plugins) in a sandbox host.

    ``agent``: NETKIT_AGENT_SOCKET for netkit's plugins (None: none, and NETKIT_AGENT=off);
    ``agent_off``: NETKIT_AGENT=off also with a socket (in-process, never an agent); ``firewall``: NETKIT_FIREWALL_BACKEND ("" not
    set); ``cni_version``: of every config (podman 4.3 writes 0.4.0); ``podman_keys``: the bridge
    config also has what `podman network create` writes (ipMasq, hairpinMode, the range's gateway).
    Containers are namespaces named in /run/netns, their names the container IDs.
    """

    container_port = 80  # of the one tcp mapping the portmap config asks for
    port_floor = 1024    # published_ports: host ports above it (so the containerPort is not one)

    def __init__(self, host: str, bin_dir: str, netkit: bool, name: str, bridge: str, subnet: str,
                 data_dir: str, agent: str | None = None, firewall: str = "", label: str = "",
                 cni_version: str = "1.0.0", agent_off: bool = False, podman_keys: bool = False) -> None:
        self.host, self.bin_dir, self.netkit, self.name, self.bridge = host, bin_dir, netkit, name, bridge
        self.subnet, self.data_dir, self.agent, self.firewall = ipaddress.ip_network(subnet), data_dir, agent, firewall
        self.label = label or name
        self.cni_version, self.agent_off, self.podman_keys = cni_version, agent_off, podman_keys
        os.makedirs(data_dir, exist_ok=True)

    def type(self, plugin: str) -> str:
        """netkit's name for a reference plugin's type (bridge, host-local, portmap, loopback)."""
        nk = {"host-local": "netkit-ipam"}.get(plugin, f"netkit-{plugin}")
        return nk if self.netkit else plugin

    def exe(self, type_: str) -> str:
        """The executable of a plugin type: netkit's launchers in bin_dir, the reference's in /usr/lib/cni."""
        return os.path.join(self.bin_dir if type_.startswith("netkit-") else REFERENCE_BIN, type_)

    def env(self, command: str, container: str | None = None) -> dict[str, str]:
        """The CNI_* environment of one call (for ``container``, a namespace in /run/netns)."""
        env = {"CNI_COMMAND": command, "CNI_PATH": f"{self.bin_dir}:{REFERENCE_BIN}",
               "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
        if self.netkit and self.agent is not None:  # never a machine-wide agent: ours, or none
            env["NETKIT_AGENT_SOCKET"] = self.agent
        if self.netkit and (self.agent is None or self.agent_off):
            # in-process: without it a launcher would start an agent (on the default socket if none is named)
            env["NETKIT_AGENT"] = "off"
        if self.netkit and self.firewall:
            env["NETKIT_FIREWALL_BACKEND"] = self.firewall
        if container is not None:
            env.update(CNI_NETNS=f"/run/netns/{container}", CNI_IFNAME="eth0", CNI_CONTAINERID=container)
        return env

    def bridge_conf(self, prev: dict[str, Any] | None = None) -> dict[str, Any]:
        """The bridge config (with its IPAM), ``prev`` as prevResult for a DEL."""
        rng: dict[str, str] = {"subnet": str(self.subnet)}
        conf: dict[str, Any] = {"cniVersion": self.cni_version, "name": self.name, "type": self.type("bridge"),
                                "bridge": self.bridge, "isGateway": True}
        if self.podman_keys:
            conf.update(ipMasq=True, hairpinMode=True)
            rng["gateway"] = str(self.subnet.network_address + 1)
        conf["ipam"] = {"type": self.type("host-local"), "ranges": [[rng]], "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": self.data_dir}
        return conf if prev is None else dict(conf, prevResult=prev)  # DEL: as libcni sends it

    def portmap_conf(self, host_port: int, prev: dict[str, Any]) -> dict[str, Any]:
        """The portmap config publishing ``host_port`` -> container_port/tcp, the bridge's result as prevResult."""
        # "protocol" spelled out: the reference portmap requires it (netkit defaults to tcp).
        return {"cniVersion": self.cni_version, "name": self.name, "type": self.type("portmap"),
                "capabilities": {"portMappings": True},
                "runtimeConfig": {"portMappings": [{"hostPort": host_port, "containerPort": self.container_port,
                                                    "protocol": "tcp"}]},
                "prevResult": prev}

    def call(self, command: str, conf: dict[str, Any], container: str | None = None, rss: bool = False) -> Exec:
        """Exec the plugin of ``conf`` in the sandbox host, timed."""
        return exec_in(self.host, [self.exe(conf["type"])], self.env(command, container), json.dumps(conf).encode(),
                       rss)

    def add(self, container: str, rss: bool = False) -> tuple[Exec, dict[str, Any]]:
        """bridge ADD (the bridge execs its IPAM delegate); it must give an address in the subnet."""
        e = self.call("ADD", self.bridge_conf(), container, rss)
        result = e.json()
        addrs = [i.get("address", "") for i in result.get("ips", [])] if isinstance(result, dict) else []
        if e.code != 0 or not any(ipaddress.ip_interface(a).ip in self.subnet for a in addrs if a):
            raise BenchError(f"{self.label}: bridge ADD in {container} failed ({e.why()})")
        return e, result

    def delete(self, container: str, prev: dict[str, Any], rss: bool = False) -> Exec:
        """bridge DEL with the ADD's result as prevResult; it must exit 0."""
        e = self.call("DEL", self.bridge_conf(prev), container, rss)
        if e.code != 0:
            raise BenchError(f"{self.label}: bridge DEL in {container} failed ({e.why()})")
        return e

    def chain_add(self, container: str, host_port: int, rss: bool = False,
                  checked: bool = False) -> tuple[float, dict[str, Any], list[Exec]]:
        """bridge ADD, then portmap ADD with the bridge's result as prevResult: ms of both, the result.
        ``checked``: then (untimed) the host's NAT rules must hold a DNAT for ``host_port``."""
        e1, prev = self.add(container, rss)
        e2 = self.call("ADD", self.portmap_conf(host_port, prev), container, rss)
        result = e2.json()
        if e2.code != 0 or not isinstance(result, dict) or result.get("ips") != prev["ips"]:
            raise BenchError(f"{self.label}: portmap ADD in {container} failed ({e2.why()})")
        if checked and host_port not in self.published_ports():
            raise BenchError(f"{self.label}: portmap ADD exited 0 but no DNAT for hostPort {host_port}")
        return e1.ms + e2.ms, result, [e1, e2]

    def chain_del(self, container: str, host_port: int, prev: dict[str, Any], rss: bool = False,
                  checked: bool = False) -> tuple[float, list[Exec]]:
        """portmap DEL, then bridge DEL, both with the chain's result as prevResult; ``checked``: then
        (untimed) no DNAT for ``host_port`` may be left."""
        e1 = self.call("DEL", self.portmap_conf(host_port, prev), container, rss)
        if e1.code != 0:
            raise BenchError(f"{self.label}: portmap DEL in {container} failed ({e1.why()})")
        e2 = self.delete(container, prev, rss)
        if checked and host_port in self.published_ports():
            raise BenchError(f"{self.label}: DEL exited 0 but the DNAT for hostPort {host_port} is still there")
        return e1.ms + e2.ms, [e1, e2]

    # ---- what the sandbox host holds ------------------------------------------------------------
    def in_host(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run a command in the sandbox host (read only, never timed)."""
        return Netns(self.host).run(*argv, timeout=120)

    def nat_text(self) -> str:
        """The host's NAT rules as the implementation's own tool lists them."""
        if not self.netkit:
            proc = self.in_host("iptables-save", "-t", "nat")  # iptables-nft on Debian 12
        elif self.firewall == "iptables":
            proc = self.in_host("iptables-legacy-save", "-t", "nat")  # netkit's iptables backend: legacy
        else:
            proc = self.in_host("nft", "list", "table", "inet", "netkit")
            if proc.returncode != 0 and "No such file" in proc.stderr:
                return ""  # no table yet
        if proc.returncode != 0:
            raise BenchError(f"listing the NAT rules of {self.host} failed: {proc.stderr.strip()}")
        return proc.stdout

    def published_ports(self) -> set[int]:
        """Host ports with a DNAT (above port_floor, so the containerPort is not one)."""
        return dnat_ports(self.nat_text(), self.port_floor)

    def attachment_chains(self) -> list[str]:
        """The per-attachment chains in the host's NAT rules."""
        return attachment_chains(self.nat_text())

    def leases(self) -> list[str]:
        """Lease files (addresses) of this network in its data dir."""
        d = os.path.join(self.data_dir, self.name)
        return sorted(n for n in os.listdir(d) if n[0].isdigit()) if os.path.isdir(d) else []

    def leftovers(self, bridges: tuple[str, ...] = ()) -> list[str]:
        """After every attachment's DEL: nothing of one left in the host (links but lo, this network's
        bridge and ``bridges``; firewall chains; DNATs; the other implementation's tables) or the data dir."""
        problems = []
        if self.leases():
            problems.append(f"leases left: {self.leases()[:5]}")
        links = sorted(Netns(self.host).links())
        if links != sorted(["lo", self.bridge, *bridges]):
            problems.append(f"links {links[:8]}, expected only lo, {', '.join([self.bridge, *bridges])}")
        if self.attachment_chains():
            problems.append(f"per-attachment chains left: {self.attachment_chains()[:5]}")
        if self.published_ports():
            problems.append(f"DNAT left for hostPorts {sorted(self.published_ports())[:5]}")
        tables = self.in_host("nft", "list", "tables").stdout.splitlines()
        foreign = [t.strip() for t in tables if t.strip() and t.strip().endswith(" netkit") != self.netkit]
        if foreign:  # netkit's tables are all named netkit; the reference's never
            problems.append(f"the other implementation's nft tables: {foreign}")
        return [f"{self.label} ({self.host}): {p}" for p in problems]

    def must_be_clean(self) -> None:
        """leftovers(), as a BenchError if there are any."""
        if problems := self.leftovers():
            raise BenchError("; ".join(problems))
