"""Shared fixtures: plugin executables installed once per run, and a sandbox host per test."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from typing import Iterator

import pytest
from harness import procs
from harness.agent import OWNED, Agent, agent_processes, environ_of

from netkit.agent.protocol import DEFAULT_SOCKET
from netkit.launch import install
from tests import machine
from tests import sandbox as sb


@pytest.fixture(scope="session")
def plugin_bin(tmp_path_factory: pytest.TempPathFactory) -> str:
    """netkit's plugin executables, written by the real installer into a temp bin dir."""
    root = tmp_path_factory.mktemp("cni")
    install.install(bin_dir=str(root / "bin"), conf_dir=str(root / "conf"))
    return str(root / "bin")


@pytest.fixture(scope="session")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A warm `netkit agent` for the run; its socket path."""
    proc = Agent(str(tmp_path_factory.mktemp("agent") / "agent.sock")).start()
    yield proc.path
    proc.stop()


@pytest.fixture(params=["in-process", "agent"])
def box(request: pytest.FixtureRequest, plugin_bin: str, tmp_path: os.PathLike[str]) -> Iterator[sb.Sandbox]:
    """A throwaway sandbox host namespace with its own lease directory.

    Every test using it runs twice: plugins answering in-process, and through the warm agent.
    """
    if os.geteuid() != 0:
        pytest.fail("namespace tests need root")
    socket_path = request.getfixturevalue("agent") if request.param == "agent" else ""
    with sb.sandbox(plugin_bin, os.path.join(str(tmp_path), "leases"), socket_path) as box:
        yield box


@pytest.fixture
def inproc(plugin_bin: str, tmp_path: os.PathLike[str]) -> Iterator[sb.Sandbox]:
    """A throwaway sandbox host whose plugins always answer in-process (no agent): for faults armed
    in the plugin's own environment and for inputs fed to the handler directly."""
    if os.geteuid() != 0:
        pytest.fail("namespace tests need root")
    with sb.sandbox(plugin_bin, os.path.join(str(tmp_path), "leases")) as box:
        yield box


@pytest.fixture(params=["nftables", "iptables"])
def fw_inproc(request: pytest.FixtureRequest, inproc: sb.Sandbox) -> sb.Sandbox:
    """An in-process sandbox on each firewall backend."""
    inproc.firewall = request.param
    return inproc


@pytest.fixture(params=["nftables", "iptables"])
def fw_box(request: pytest.FixtureRequest, box: sb.Sandbox) -> sb.Sandbox:
    """A sandbox whose plugins use one firewall backend; every firewall test runs on both."""
    box.firewall = request.param
    return box


@pytest.fixture
def servers() -> Iterator[list[subprocess.Popen[str]]]:
    """Test servers a test starts (Namespace.serve, sandbox.serve_in); killed when it ends."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        p.kill()
        p.wait()


@pytest.fixture(scope="session")
def reference_plugins() -> str:
    """Debian's containernetworking-plugins; the setup script installs them, so a missing one is a
    broken install: every test that needs them fails, none is skipped."""
    missing = sb.missing_reference_plugins()
    if missing:
        pytest.fail(f"reference plugins missing in {sb.REFERENCE_BIN}: {', '.join(missing)}: run ./setup.sh test "
                    f"(it installs Debian's containernetworking-plugins)", pytrace=False)
    return sb.REFERENCE_BIN


@pytest.fixture(autouse=True)
def no_agent_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a `netkit agent` it caused: plugins start one wherever none answers, and
    one that outlives its test would serve (or hold the namespace of) whatever comes next.

    Its: started during the test, and this run's (the run's mark in its environment, the run's prefix
    or temp root in its socket path: podman hands plugins an environment of its own; or on the
    default socket with this run's interpreter: a plugin exec'd with an environment of the test's
    own).  Not counted: agents on sockets someone stops on purpose later (harness.agent.OWNED).
    """
    before = set(agent_processes())
    yield
    base = _basetemp(request.config)
    left = {pid: sock for pid, sock in agent_processes().items()
            if pid not in before and sock not in OWNED
            and (environ_of(pid).get(sb.RUN_MARK) == sb.RUN_PREFIX or sb.RUN_PREFIX in sock
                 or (base and sock.startswith(base))
                 or (sock in ("", DEFAULT_SOCKET) and _argv0(pid) == sys.executable))}
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if left:
        pytest.fail(f"the test left netkit agent(s) running: {left} (pid: socket); stop what you cause "
                    f"(harness.agent.Agent, netkit.agent.control.stop) or run plugins with NETKIT_AGENT=off",
                    pytrace=False)


def _argv0(pid: int) -> str:
    try:
        return procs.cmdline(pid).split(" ")[0]
    except OSError:
        return ""  # gone


_BEFORE = pytest.StashKey[machine.Snapshot]()


def _basetemp(config: pytest.Config) -> str:
    """This session's temp root: runtime roots there bind namespaces, and a mount left there is ours."""
    factory = getattr(config, "_tmp_path_factory", None)
    return str(factory.getbasetemp()) if factory is not None else ""


def pytest_sessionstart(session: pytest.Session) -> None:
    """Mark the run's processes and look at the machine before any test runs: what is already there
    (a demo's `inet netkit` table, `netkit0`, ip_forward=1) is not the suite's to report."""
    os.environ[sb.RUN_MARK] = sb.RUN_PREFIX
    session.config.stash[_BEFORE] = machine.snapshot(mounts_under=(_basetemp(session.config),))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if anything this suite made or changed is still on the machine.

    Last: after a stop (-x, Ctrl-C) pytest tears module and session fixtures (the agent, podman's
    networks) down in its own pytest_sessionfinish; what they remove then is not left.
    """
    left = sb.leftovers(session.config.stash.get(_BEFORE, None), mounts_under=(_basetemp(session.config),))
    if left:
        print("\nLEFT ON THE MACHINE BY THE SUITE: " + ", ".join(left))
        for name in [x.split()[1] for x in left if x.startswith("netns ")]:
            sb.ip("netns", "del", name, check=False)
        for pid in [int(x.split()[1]) for x in left if x.startswith("process ")]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # marked as this run's: nothing else carries the mark
        session.exitstatus = 1
