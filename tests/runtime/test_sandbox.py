"""The runtime under `ip netns exec`: every command in a private mount namespace that ends with it.

What a user types, one command after another, with the installed console script: the bind mount
that keeps a container's namespace under the root is gone for every later command, yet joining,
exec, inspect, stop and rm keep working, and rm leaves no lease, veth or rule behind.
"""

from __future__ import annotations

import os
import subprocess
import sys

from netkit.net import netns
from tests.runtime.conftest import Runtime
from tests.sandbox import TRAFFIC

HOST, MACHINE = "10.30.0.1", "10.30.0.2"


def _serve(rt: Runtime, name: str) -> None:
    rt("run", "-d", "--name", name, "-p", "8080:80", "--", sys.executable, TRAFFIC, "serve", name, "80")


def _bind_mount_gone(rt: Runtime, name: str) -> bool:
    """True when the namespace the runtime bound for ``name`` is not visible here: the case under test."""
    return not netns.exists(os.path.join(rt.root, "netns", rt.inspect(name)["Id"]))


def test_under_ip_netns_exec_a_container_joins_the_network_a_previous_command_made(rt_ip_netns_exec: Runtime) -> None:
    rt = rt_ip_netns_exec
    x = rt.box.machine([HOST], MACHINE)
    _serve(rt, "web")
    assert _bind_mount_gone(rt, "web")
    web_ip = rt.ip("web")

    rt("run", "-d", "--name", "sidecar", "--net=container:web", "--", "sleep", "300")
    assert rt.wait_answer(lambda: rt("exec", "sidecar", "--", sys.executable, TRAFFIC, "tcp", "127.0.0.1", "80",
                                     check=False).stdout.startswith("web "))
    assert web_ip in rt("run", "--rm", "--net=container:sidecar", "--", "ip", "-br", "addr").stdout
    assert (x.ask("tcp", HOST, 8080) or "").startswith("web ")

    key = rt.inspect("web")["NetworkSettings"]["SandboxKey"]  # a path one can enter from anywhere
    entered = subprocess.run(["nsenter", f"--net={key}", "ip", "-br", "addr"], capture_output=True, text=True)
    assert web_ip in entered.stdout, (key, entered.stderr)

    rt("stop", "-t", "0", "web")
    proc = rt("rm", "web", check=False)  # stopped, but the sidecar still lives in its network
    assert proc.returncode == 1 and "share its network" in proc.stderr and proc.stderr.count("\n") == 1
    assert web_ip in rt("exec", "sidecar", "--", "ip", "-br", "addr").stdout
    rt("rm", "-f", "sidecar", "web")
    assert x.ask("tcp", HOST, 8080) is None
    rt.assert_nothing_left()


def test_under_ip_netns_exec_stop_then_rm_release_the_lease_veth_and_rules(rt_ip_netns_exec: Runtime) -> None:
    rt = rt_ip_netns_exec
    rt("run", "-d", "--name", "web", "-p", "8080:80", "--", "sleep", "300")
    rt("run", "-d", "--name", "sidecar", "--net=container:web", "--", "sleep", "300")
    assert _bind_mount_gone(rt, "web")
    rt("stop", "-t", "0", "sidecar", "web")
    assert rt.wait_answer(lambda: rt("ps", "-a").stdout.count("Exited (137)") == 2)
    assert rt.inspect("web")["NetworkSettings"]["SandboxKey"] == ""  # its namespace ended with it
    rt("rm", "sidecar", "web")
    rt.assert_nothing_left()
