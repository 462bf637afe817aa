#!/usr/bin/env bash
# netkit's one entry point on a fresh Debian/Ubuntu machine, as root:
#   ./setup.sh demo          install everything, install the plugins, attach a namespace and ping the
#                            gateway, then `netkit run -d -p 8080:80` a web server and curl it
#   ./setup.sh test [ARGS]   install everything, run the test suite (ARGS go to pytest)
#   ./setup.sh bench         install everything, run every benchmark in bench/ (not part of the tests)
#   ./setup.sh deps          install everything, nothing else
# Idempotent: packages already present are not fetched again.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

# System packages the plugins, the tests and the benchmarks need, each named here (a fresh Debian 12
# has none of them; scripts/fresh-machine.sh proves the list on a debootstrapped root):
#   iproute2 (ip, bridge; ip netns in tests), iputils-ping (labs' probes), procps (sysctl, pgrep, ps,
#   kill), util-linux (nsenter, unshare, setpriv), mount (mount, umount), curl (the demo),
#   iptables (iptables-legacy[-save], iptables-save) and nftables (nft), the firewall libraries
#   python-iptables and libnftables load, the reference plugins (interop tests and benchmarks),
#   Debian's Python with venv, ca-certificates (Debian's pip checks PyPI's certificate against the
#   system's bundle; python3.11 only recommends it), a compiler with the C library headers
#   (python-iptables ships only an sdist; `netkit cni install` compiles the C plugin launcher), podman + containerd + runc + busybox-static (end-to-end
#   tests: podman and `ctr run --cni` drive the plugins), systemd (systemd-analyze verifies the agent's
#   units offline; installing it makes nothing PID 1), time
#   and iperf3 (benchmarks), graphviz (dot: lab pictures), dnsutils (dig: the name-resolution tests'
#   queries), aardvark-dns and dnsperf (bench/dns.py: podman's resolver and the load generator).
# vagrant-libvirt is named explicitly: vagrant only *recommends* it, and without a provider that is
# usable as the default `vagrant validate` (tests/lab/test_vagrant.py) fails with "No usable default
# provider could be found".  It is the one provider Debian 12 ships (VirtualBox is not in bookworm;
# vagrant's docker provider cannot be the default), and validating needs no libvirt daemon: the
# package brings only the libvirt client library.  Its own recommendations (qemu-utils,
# nfs-kernel-server, libguestfs-tools) are not needed to validate and stay out.
PACKAGES=(iproute2 iputils-ping procps util-linux mount curl iptables nftables libxtables12 libip4tc2 libip6tc2
          libnftables1 containernetworking-plugins python3 python3-venv python3-dev ca-certificates gcc libc6-dev
          podman containerd runc busybox-static time iperf3 graphviz vagrant vagrant-libvirt systemd
          dnsutils aardvark-dns dnsperf)

need_root() {
  if [[ $(id -u) != 0 ]]; then echo "setup.sh: run as root (network namespaces need it)" >&2; exit 1; fi
}

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "setup.sh: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

pick_python() {
  # Debian's interpreter by default: the plugin launchers name it by absolute path, so it must
  # not move (a pyenv shim could).  PYTHON=... overrides.
  local py=${PYTHON:-/usr/bin/python3}
  [[ -x $py ]] || py=$(command -v python3)
  if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "setup.sh: netkit needs Python >= 3.11 ($py is $("$py" -V 2>&1))" >&2; exit 1
  fi
  echo "$py"
}

install_venv() {
  local py stamp want
  py=$(pick_python)
  stamp=.venv/.netkit-installed
  want="$py $(sha256sum pyproject.toml | cut -c1-16)"
  if [[ ! -x .venv/bin/python || ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    rm -rf .venv
    "$py" -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
    # netkit's own command over pip's console script: no site import (~15 ms a command; netkit/cli/thin.py)
    .venv/bin/python -m netkit.cli.thin .venv/bin/netkit
    echo "$want" > "$stamp"
  fi
}

DEMO_NS=netkit-demo
demo_cleanup() {
  .venv/bin/netkit cni del netkit "$DEMO_NS" >/dev/null 2>&1 || true
  ip netns del "$DEMO_NS" 2>/dev/null || true
}

demo() {
  local ns=$DEMO_NS gw
  .venv/bin/netkit cni install
  demo_cleanup
  ip netns add "$ns"
  trap demo_cleanup EXIT
  gw=$(.venv/bin/netkit cni add netkit "$ns" | tee /dev/stderr |
       .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["ips"][0]["gateway"])')
  echo "setup.sh: namespace $ns attached to network netkit; pinging the gateway $gw"
  ip netns exec "$ns" ping -c 3 -W 2 "$gw"
  demo_cleanup
  trap demo_web_cleanup EXIT
  # The container sees the host's filesystem: serve the demo's own directory, never a listing of
  # the host's files (http.server's default is its working directory).
  echo "setup.sh: netkit run -d --name $DEMO_WEB --net=bridge -p 8080:80 -- python3 -m http.server 80 --directory $DEMO_SITE"
  .venv/bin/netkit run -d --name "$DEMO_WEB" --net=bridge -p 8080:80 -- python3 -m http.server 80 --directory "$DEMO_SITE"
  for _ in $(seq 50); do curl -sf -o /dev/null http://127.0.0.1:8080/ && break; sleep 0.2; done
  echo "setup.sh: curl http://127.0.0.1:8080/"
  curl -sS http://127.0.0.1:8080/ | head -n 5
  .venv/bin/netkit ps
}

DEMO_WEB=netkit-demo-web
DEMO_SITE=$PWD/demo  # the page the demo's web server publishes (demo/index.html)
demo_web_cleanup() {
  .venv/bin/netkit rm -f "$DEMO_WEB" >/dev/null 2>&1 || true
}

need_root
install_packages
install_venv
case "${1:-}" in
  demo) demo ;;
  test) shift; exec .venv/bin/python -m pytest "$@" ;;
  bench)
    # The benchmarks print their tables; each also writes JSON next to the others.  One that fails
    # does not stop the rest; the summary then says "not measured" for its targets.
    mkdir -p bench/results
    rm -f bench/results/*.json  # a benchmark that fails must not leave an older run's figures to the summary
    failed=()
    # Issue 16's rows: the plugins on podman's conflist shape (podman_shape), ADD at 500 and the agent's
    # memory (scale, part b, nftables), `netkit run` against podman (runtime_start) and podman on
    # netkit's conflist (podman_plugins), the last two with the agent of the default install.
    # Once the first plugin exec starts the agent itself (autostart), --agent goes from these two and
    # bench/podman_shape.py's AUTOSTART becomes True.  cni_latency and throughput run by hand.
    # Issue 18's figures: a Node's change to the routes (node_routes), CRI RunPodSandbox (cri_runpod).
    for b in cold_start podman_shape scale runtime_start_agent podman_plugins dns node_routes cri_runpod; do
      script=${b%_agent}
      [[ -f bench/$script.py ]] || continue
      echo "== bench/$script.py ($b)"
      args=(--json "bench/results/$b.json")
      case $b in
        cold_start) args=() ;;
        scale) args+=(--parts b --no-iptables) ;;
        podman_shape)
          # "Today's" in-process ADD of issue 16's first-ADD target: the code as it was when the work
          # began (BENCH_BASELINE), measured in the same rounds; skipped where history is missing.
          baseline=${BENCH_BASELINE:-d54988e}
          if git rev-parse -q --verify "$baseline^{commit}" >/dev/null 2>&1; then
            rm -rf bench/results/baseline-src && mkdir -p bench/results/baseline-src
            git archive "$baseline" netkit | tar -x -C bench/results/baseline-src
            args+=(--compare bench/results/baseline-src)
          else
            echo "bench: commit $baseline not in this clone: the first-ADD target is not measured" >&2
          fi ;;
        runtime_start_agent|podman_plugins) args+=(--agent) ;;
      esac
      .venv/bin/python "bench/$script.py" "${args[@]}" || failed+=("$b")
    done
    echo "== issue 16's targets (bench/targets.py, from the JSON above)"
    .venv/bin/python bench/targets.py
    if (( ${#failed[@]} )); then echo "failed: ${failed[*]}" >&2; exit 1; fi ;;
  deps) ;;
  *) echo "usage: $0 demo | test [pytest args] | bench | deps" >&2; exit 2 ;;
esac
