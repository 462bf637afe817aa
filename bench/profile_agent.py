#!/usr/bin/env python3
"""Where a warm request's time goes: the agent under cProfile, one profile per request.

Run as root from the repository root::

    .venv/bin/python bench/profile_agent.py [--runs 30] [--top 25] [--out DIR]

Starts `netkit agent` in this very interpreter with ``handler.handle`` wrapped in a profiler (the
outermost call per thread: the bridge's IPAM delegate, answered in the same thread, is inside the
bridge's profile), drives bridge+IPAM ADD/DEL and portmap ADD/DEL on podman's conflist shape
(harness.cnichain, cniVersion 0.4.0) through the launchers, and prints, per plugin and command, the
functions with the most cumulative time over all requests, plus the launcher's side: wall time
of each exec against the agent's time inside the handler (the rest is interpreter start, imports,
the round trip).  Then the in-process chain ADD (NETKIT_AGENT=off) under the profiler too, its
``os._exit`` made to write the profile first.  Not part of the test suite; nothing timed here is a
target figure (the profiler slows what it watches): bench/podman_shape.py is.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import cProfile
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness import hostns  # noqa: E402
from harness.bench import NO_AGENT  # noqa: E402
from harness.cnichain import Network, exec_in  # noqa: E402

INPROC_WRAPPER = """
import cProfile, os, sys
sys.path[:0] = {paths!r}
prof = cProfile.Profile()
real_exit = os._exit
def _exit(code):
    prof.disable()
    prof.dump_stats({out!r})
    real_exit(code)
os._exit = _exit
prof.enable()
from netkit.launch.executable import main
main({plugin!r})
"""


def serve(socket: str, out: str, profile: bool = True) -> None:
    """The agent (as `netkit agent` runs it), every request's handler profiled into ``out`` (without
    ``profile``: only timed, each request an empty file named with its time)."""
    from netkit.agent import server
    from netkit.cni import handler
    from netkit.launch import invoker

    invoker.use()
    real = handler.handle
    local = threading.local()
    count = [0]
    guard = threading.Lock()

    def profiled(plugin, env, stdin):  # type: ignore[no-untyped-def]
        if getattr(local, "active", False):  # a delegate answered in this thread: inside the outer profile
            return real(plugin, env, stdin)
        local.active = True
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        try:
            return prof.runcall(real, plugin, env, stdin) if profile else real(plugin, env, stdin)
        finally:
            ms = (time.perf_counter() - t0) * 1000
            local.active = False
            with guard:
                count[0] += 1
                n = count[0]
            try:  # which plugin: the config's type (the handler is handed functions, not a name)
                short = str(json.loads(stdin).get("type", "plugin")).replace("-", "_")
            except ValueError:
                short = "plugin"
            name = f"{short}-{env.get('CNI_COMMAND')}-{n:05d}-{ms:.1f}ms.prof"
            if profile:
                prof.dump_stats(os.path.join(out, name))
            else:
                open(os.path.join(out, name), "wb").close()

    handler.handle = profiled
    server.serve(socket)


def category(path: str, name: str) -> str:
    """Where a profiled function's own time counts in the breakdown."""
    if "pyroute2" in path or "asyncio" in path:
        return "pyroute2 + asyncio (python)"
    if path == "~" and any(w in name for w in ("socket", "select", "poll")):
        return "socket calls (the kernel's netlink and nft work)"
    if "libnft.py" in path:
        return "libnftables (ctypes)"
    if "netkit/ipam" in path or "plugins/ipam.py" in path:
        return "netkit ipam"
    if "netkit/firewall" in path or "publish.py" in path or "portmap.py" in path:
        return "netkit firewall, publish"
    if "netkit/" in path:
        return "netkit other (bridge, cni, net, launch)"
    if path == "~":
        return "other built-ins"
    return "standard library (python)"


def shares(stats: pstats.Stats, n: int) -> None:
    """Self time per category over ``n`` requests."""
    cats: dict[str, float] = {}
    for (path, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        key = category(path, name)
        cats[key] = cats.get(key, 0.0) + tottime
    total = sum(cats.values())
    print(f"self time by category, per request ({total / n * 1000:.1f} ms profiled):")
    for key, t in sorted(cats.items(), key=lambda kv: -kv[1]):
        print(f"  {key:<52} {t / n * 1000:6.2f} ms {100 * t / total:4.0f}%")


def report(out: str, top: int) -> None:
    """Per plugin and command: requests, median handler ms, then the top functions (cumulative)."""
    groups: dict[str, list[str]] = {}
    for name in sorted(os.listdir(out)):
        if name.endswith(".prof"):
            plugin, command = name.split("-")[0:2]  # <plugin>-<COMMAND>-<n>-<ms>ms.prof
            groups.setdefault(f"{plugin} {command}", []).append(name)
    for key, names in groups.items():
        ms = sorted(float(n.rsplit("-", 1)[1][:-len("ms.prof")]) for n in names)
        print(f"\n=== agent: {key}: {len(names)} requests, handler median {ms[len(ms) // 2]:.1f} ms"
              f"{'' if top else ' (not profiled)'}")
        if not top:
            continue
        buf = io.StringIO()
        stats = pstats.Stats(*(os.path.join(out, n) for n in names), stream=buf)
        shares(stats, len(names))
        stats.sort_stats("cumulative").print_stats(top)
        print("\n".join(line for line in buf.getvalue().splitlines() if line.strip() and ".prof" not in line))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--out", default="", help="keep the .prof files here (default: a temp dir, removed)")
    ap.add_argument("--present", type=int, default=0, metavar="N",
                    help="first make N attachments (kept): the requests measured then run with N present")
    ap.add_argument("--no-profile", action="store_true",
                    help="only time the agent's handler per request (no profiler slowing it): the breakdown's figures")
    ap.add_argument("--serve", nargs=3, metavar=("SOCKET", "DIR", "PROFILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve[0], args.serve[1], args.serve[2] == "1")
        return 0
    from netkit.launch import executable, install

    tmp = tempfile.mkdtemp(prefix="netkit-prof-")
    out = args.out or os.path.join(tmp, "prof")
    os.makedirs(out, exist_ok=True)
    bin_dir, sock = os.path.join(tmp, "bin"), os.path.join(tmp, "agent.sock")
    install.install(bin_dir=bin_dir, conf_dir=os.path.join(tmp, "net.d"))
    ns = hostns.Namespaces("nkq")
    agent = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", sock, out,
                              "0" if args.no_profile else "1"],
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not os.path.exists(sock):
            if agent.poll() is not None:
                raise SystemExit("the profiled agent exited")
            time.sleep(0.02)
        host = f"{ns.tag}-h"
        ns.add(host, lo=True)
        warm = Network(host, bin_dir, True, "prof", f"{ns.tag}b", "10.77.0.0/16", os.path.join(tmp, "data"), sock,
                       "nftables", cni_version="0.4.0", podman_keys=True)
        walls: dict[str, list[float]] = {}
        if args.present:  # attachments already there (each with a published port), 8 at a time
            names = [n.name for n in ns.add(*(f"{ns.tag}-p{k}" for k in range(args.present)))]
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda k: warm.chain_add(names[k], 30000 + k), range(args.present)))
        skip = 2 * args.present + 8  # their requests (a bridge's and a portmap's each), then 2 warm-up rounds'
        for i in range(args.runs + 2):
            (c,) = ns.add(f"{ns.tag}-c{i}")
            ms, result, execs = warm.chain_add(c.name, 22000 + i)
            ms2, dels = warm.chain_del(c.name, 22000 + i, result)
            ns.delete(c.name)
            if i >= 2:
                for label, e in zip(("bridge ADD", "portmap ADD", "portmap DEL", "bridge DEL"), (*execs, *dels)):
                    walls.setdefault(label, []).append(e.ms)
        # The fixed cost of any exec: getting into the host, an interpreter, a launcher's round trip.
        fixed = {"ip netns exec HOST /bin/true": ["/bin/true"],
                 "ip netns exec HOST python -IS -c pass": [sys.executable, "-IS", "-c", "pass"],
                 "launcher VERSION through the agent": [warm.exe("netkit-bridge")]}
        for _ in range(args.runs):
            for label, argv in fixed.items():
                walls.setdefault(label, []).append(
                    exec_in(host, argv, warm.env("VERSION"), b'{"cniVersion":"0.4.0"}').ms)
        agent.terminate()
        agent.wait(10)
        for name in os.listdir(out):  # the 2 warm-up rounds' 4 requests each (bridge made, first imports)
            if int(name.rsplit("-", 2)[1]) <= skip:
                os.unlink(os.path.join(out, name))
        print("launcher exec wall time (ip netns exec HOST launcher), median ms:")
        for label, xs in walls.items():
            print(f"  {label:<40} {sorted(xs)[len(xs) // 2]:6.1f}")
        report(out, 0 if args.no_profile else args.top)
        if args.no_profile:
            return 0
        # In-process: one chain ADD (bridge, then portmap) with NETKIT_AGENT=off, each exec profiled
        # from the launcher's first import to its os._exit.
        cold = Network(host, bin_dir, True, "prof", f"{ns.tag}b", "10.77.0.0/16", os.path.join(tmp, "data"),
                       NO_AGENT, "nftables", cni_version="0.4.0", podman_keys=True, agent_off=True)
        (c,) = ns.add(f"{ns.tag}-cold")

        def inproc(plugin: str, conf: dict[str, object]) -> dict[str, object]:
            prof = os.path.join(tmp, f"inproc-{plugin}.prof")
            code = INPROC_WRAPPER.format(paths=executable.import_paths(), out=prof, plugin=plugin)
            p = subprocess.run(["ip", "netns", "exec", host, sys.executable, "-IS", "-c", code],
                               input=json.dumps(conf).encode(), capture_output=True, env=cold.env("ADD", c.name))
            stats = pstats.Stats(prof, stream=io.StringIO())
            imports = max((v[3] for k, v in stats.stats.items()  # type: ignore[attr-defined]
                           if k[2] == "_find_and_load"), default=0.0)
            print(f"\n=== in-process {plugin} ADD (NETKIT_AGENT=off), one exec: {stats.total_tt * 1000:.1f} ms "  # type: ignore[attr-defined]
                  f"profiled, {imports * 1000:.1f} ms of it importing")
            shares(stats, 1)
            buf = io.StringIO()
            stats.stream = buf  # type: ignore[attr-defined]
            stats.sort_stats("cumulative").print_stats(args.top)
            print("\n".join(line for line in buf.getvalue().splitlines()[6:] if line.strip()))
            return json.loads(p.stdout)

        prev = inproc("netkit-bridge", cold.bridge_conf())
        inproc("netkit-portmap", cold.portmap_conf(22999, prev))
        cold.call("DEL", cold.portmap_conf(22999, prev), c.name)
        cold.delete(c.name, prev)
    finally:
        if agent.poll() is None:
            agent.terminate()
            agent.wait(10)
        for problem in ns.close():
            print(f"CLEANUP PROBLEM: {problem}", file=sys.stderr)
        if not args.out:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
