#!/usr/bin/env bash
# Proves the README's commands on a fresh Debian 12: builds a minimal bookworm root with debootstrap
# from Debian's archive, copies the committed tree of this checkout into it (`git archive HEAD`, what a
# clean clone holds: no .venv, no uncommitted change), and runs, with that root as / on this kernel:
#   1. ./setup.sh deps   with the machine's network (it fetches from Debian's archive and PyPI only)
#   2. ./setup.sh test   (ARGS go to pytest) in a new network namespace with only lo, up
#      --demo: ./setup.sh demo && ./setup.sh test, both in that one fresh network namespace
# Each step runs in its own mount, PID, UTS and IPC namespaces (plus the network one for step 2), so
# every mount, process and namespace it makes ends with it; the script compares the machine's mounts,
# network namespaces, links, cgroups, ip_forward and nft ruleset before and after.
#
#   scripts/fresh-machine.sh [--demo] [--cache] [--keep] [--root DIR] [--clone-dir DIR] [-- PYTEST_ARGS...]
#     --clone-dir where in the root the checkout goes (default /root/netkit, root's home)
#     --cache     keep the debootstrap result in /var/cache/netkit-fresh and start from it next time
#     --keep      leave the root (and the log) in place; --root DIR reuses such a root: step 1 then
#                 finds the packages installed (not a fresh machine any more: for debugging only)
# Not part of the test suite; takes 15-20 minutes on 2 shared cores (the suite itself is most of it).
set -euo pipefail

SUITE=bookworm
MIRROR=http://deb.debian.org/debian
CACHE_DIR=/var/cache/netkit-fresh
CLONE_DIR=/root/netkit                       # where a new user, root, clones it: root's home (mode 700)
GUEST_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
SELF=$(readlink -f "$0")
REPO=$(cd "$(dirname "$SELF")/.." && pwd)

say() { echo "fresh-machine: $*" >&2; }
die() { say "$*"; exit 1; }

usage() {
  sed -n '/^#   scripts/,/^# Not part/p' "$SELF" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# ---- inside the namespaces (the script runs itself here as PID 1 of a new PID namespace) ----------

enter_root() {
  # Makes the root this mount namespace's /, as / is a machine's: mounts first, then pivot_root
  # (not chroot: setns() into a mount namespace puts a process at that namespace's root, so under a
  # chroot `netkit exec` and nsenter would land outside the root).  unshare gave the namespace
  # private propagation: nothing here reaches the machine's mount table, and all of it goes when the
  # namespace's last process exits.
  local root=$1
  mount --bind "$root" "$root"
  mount -t proc -o nosuid,nodev,noexec proc "$root/proc"          # this PID namespace's processes
  mount -t sysfs -o nosuid,nodev,noexec sysfs "$root/sys"         # this network namespace's devices
  mount --rbind /sys/fs/cgroup "$root/sys/fs/cgroup"              # the kernel's hierarchy (podman, runc)
  mount --rbind /dev "$root/dev"
  mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$root/dev/pts"
  mount --bind "$root/dev/pts/ptmx" "$root/dev/ptmx"
  mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs "$root/dev/shm"   # podman's locks: not the machine's
  mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs "$root/run"
  mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs "$root/tmp"
  cd "$root"
  pivot_root . .          # pivot_root(2)'s own recipe: the old root lands on top of "." ...
  umount -l .             # ... and goes; from here on every command is the root's own
  cd /
  # Shared propagation, as systemd makes /: `ip netns` and podman bind-mount namespaces under /run.
  mount --make-rshared /
}

guest() {
  # A login's environment, nothing of the caller's (no pip or proxy settings of this machine).
  env -i PATH="$GUEST_PATH" HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" "$CLONE_DIR/setup.sh" "$@" 3>&-
}

inside() {
  local root=$1 status=$2 step=$4 rc=0
  CLONE_DIR=$3; shift 4
  trap 'exit 130' INT TERM              # PID 1 ignores signals it has no handler for
  exec 3>>"$status"                     # the machine's file, still reachable after pivot_root
  if [[ $step != deps ]]; then ip link set lo up; fi
  enter_root "$root"
  case $step in
    deps) guest deps || rc=$?; echo "deps $rc" >&3 ;;
    test) guest test "$@" || rc=$?; echo "test $rc" >&3 ;;
    demo)
      guest demo || rc=$?; echo "demo $rc" >&3
      if ((rc == 0)); then guest test "$@" || rc=$?; echo "test $rc" >&3; fi ;;
  esac
  exit "$rc"
}

# ---- on the machine ----------------------------------------------------------------------------

machine_state() {
  # What a run must leave as it found it.  Other users of the machine can change some of it too:
  # differences are printed for a person to judge.
  echo "## mounts"; findmnt -rn -o TARGET,SOURCE,FSTYPE | sort
  echo "## netns"; ip netns list | sort
  echo "## links"; ip -o link show | awk -F': ' '{print $2}' | sort
  echo "## cgroups"; find /sys/fs/cgroup -mindepth 1 -maxdepth 2 -type d | sort
  echo "## ip_forward"; cat /proc/sys/net/ipv4/ip_forward
  echo "## nft"; nft list ruleset 2>/dev/null | sha256sum
}

ensure_debootstrap() {
  if ! command -v debootstrap >/dev/null; then
    say "installing debootstrap on this machine (apt-get install debootstrap)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  fi
}

build_root() {
  local root=$1 arch tarball
  arch=$(dpkg --print-architecture)
  tarball=$CACHE_DIR/$SUITE-$arch-minbase.tar
  mkdir -p "$root"
  if ((CACHE)) && [[ -f $tarball ]]; then
    say "root from the cached debootstrap result $tarball ($(date -r "$tarball" +%F))"
    tar -C "$root" --numeric-owner -xpf "$tarball"
  else
    ensure_debootstrap
    say "debootstrap --variant=minbase $SUITE $root $MIRROR"
    # In a mount namespace of its own: the /proc and /sys it mounts in the target go with it.
    unshare --mount --propagation private -- debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" \
      > "$WORK/debootstrap.log" 2>&1 || { tail -n 20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
    if ((CACHE)); then
      mkdir -p "$CACHE_DIR"
      tar -C "$root" --numeric-owner -cpf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    fi
  fi
  # What the Debian installer would have configured: the updates and security suites, and the
  # machine's resolver (for step 1, which uses the machine's network).
  printf 'deb %s %s main\ndeb %s %s-updates main\ndeb http://deb.debian.org/debian-security %s-security main\n' \
    "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" "$SUITE" > "$root/etc/apt/sources.list"
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  # A network that intercepts TLS (as this one may) is trusted through the CAs its machines add in
  # /usr/local/share/ca-certificates: the root gets them too, and ca-certificates (which setup.sh
  # installs) includes them in the bundle pip verifies PyPI with.  Public certificates, no secrets.
  local crt
  for crt in /usr/local/share/ca-certificates/*.crt; do
    [[ -f $crt ]] || continue
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp -L "$crt" "$root/usr/local/share/ca-certificates/"
  done
  # Step 1 runs on the machine's network with no init in the root: no package may start a daemon
  # there (the usual guard of chroot builds; it stops invoke-rc.d only).
  printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
  chmod 755 "$root/usr/sbin/policy-rc.d"
  touch "$root/.netkit-fresh"
}

copy_checkout() {
  local root=$1 dest=$1$CLONE_DIR
  if [[ -d $dest ]]; then
    # A reused root keeps its .venv (setup.sh rebuilds it when pyproject.toml changed).
    find "$dest" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +
  fi
  mkdir -p "$dest"
  git -C "$REPO" archive --format=tar HEAD | tar -C "$dest" -xf -
}

step() {
  # step NAME [--net] ARGS...: runs `inside` in new namespaces; its output goes to the log too.
  local name=$1 rc; shift
  local ns=(--mount --propagation private --pid --fork --uts --ipc)
  if [[ ${1:-} == --net ]]; then ns+=(--net); shift; fi
  set +e
  unshare "${ns[@]}" -- "$SELF" --inside "$ROOT" "$WORK/status" "$CLONE_DIR" "$name" "$@" 2>&1 | tee -a "$WORK/run.log"
  rc=${PIPESTATUS[0]}
  set -e
  return "$rc"
}

mounts_under() { findmnt -rn -o TARGET | grep -F -- "$1" || true; }

finish() {
  local rc=$? changed="machine unchanged" diffs line result total
  set +e
  if [[ -n ${ROOT:-} && -n $(mounts_under "$ROOT") ]]; then
    # Cannot happen (every mount was made in a namespace that is gone); if it does, remove nothing.
    say "mounts left under $ROOT (nothing removed):"; mounts_under "$ROOT" >&2; rc=1; KEEP=1
  elif ((KEEP)); then
    say "kept the root $ROOT and the log $WORK/run.log"
  else
    [[ -n ${ROOT:-} && -f $ROOT/.netkit-fresh ]] && rm -rf --one-file-system "$ROOT"
  fi
  machine_state > "$WORK/after"
  diffs=$(diff "$WORK/before" "$WORK/after" | grep '^[<>]')
  if [[ -n $diffs ]]; then
    # Other users' test namespaces come and go on a shared machine; what this run could leave would
    # name its root (a mount or namespace that escaped its mount namespace): only that fails the run.
    say "the machine differs from before the run (other users' doing unless it names $ROOT):"
    echo "$diffs" >&2
    changed="$(echo "$diffs" | wc -l) lines of machine state differ, none naming this run's root"
    if [[ -n ${ROOT:-} ]] && grep -qF -- "$ROOT" <<< "$diffs"; then
      changed="machine CHANGED by this run (above)"; ((rc)) || rc=1
    fi
  fi
  # pytest's closing line, e.g. "===== 907 passed, 2 warnings in 700.12s (0:11:40) ====="
  line=$(grep -E '^(=+ )?[0-9]+ (passed|failed|errors?|skipped|deselected|xfailed|xpassed)\b.* in [0-9.]+s' \
           "$WORK/run.log" 2>/dev/null |
         tail -n 1 | sed -E 's/^=+ //; s/ =+$//')
  result=""
  while read -r name code; do
    [[ -n $name ]] || continue
    result+="./setup.sh $name exit $code"
    [[ $name == test && -n $line ]] && result+=" ($line)"
    [[ $name == test ]] && result+=" in ${TEST_S:-?} s"
    result+=", "
  done < <(grep -v '^deps 0$' "$WORK/status" 2>/dev/null)
  [[ -n $result ]] || result="no test run, "
  if ((rc)) && ! ((KEEP)); then cp "$WORK/run.log" "/var/tmp/netkit-fresh-last.log" 2>/dev/null \
    && say "log: /var/tmp/netkit-fresh-last.log"; fi
  ((KEEP)) || rm -rf "$WORK"
  total=$((SECONDS - T0))
  say "$result${MODE} root of $SUITE built in ${BUILD_S:-?} s, deps in ${DEPS_S:-?} s, total ${total} s; HEAD ${HEAD_ID:-?}; $changed"
  exit "$rc"
}

main() {
  DEMO=0 CACHE=0 KEEP=0 ROOT="" MODE="fresh"
  while (($#)); do
    case $1 in
      --demo) DEMO=1 ;;
      --cache) CACHE=1 ;;
      --keep) KEEP=1 ;;
      --clone-dir) [[ $# -ge 2 && $2 == /* ]] || usage; CLONE_DIR=$2; shift ;;
      --root) [[ $# -ge 2 ]] || usage; ROOT=$(readlink -f "$2"); shift ;;
      -h|--help) usage ;;
      --) shift; break ;;
      *) usage ;;
    esac
    shift
  done
  local pytest_args=("$@") rc=0 t
  [[ $(id -u) == 0 ]] || die "run as root (debootstrap, chroot and namespaces need it)"
  for t in unshare chroot pivot_root git findmnt ip nft; do command -v "$t" >/dev/null || die "$t is missing"; done
  HEAD_ID=$(git -C "$REPO" rev-parse --short HEAD)
  if [[ -n $(git -C "$REPO" status --porcelain --untracked-files=no) ]]; then
    say "note: it copies HEAD ($HEAD_ID); uncommitted changes are not in it"
  fi
  T0=$SECONDS
  WORK=$(mktemp -d /var/tmp/netkit-fresh.XXXXXX)
  : > "$WORK/status"
  machine_state > "$WORK/before"
  trap finish EXIT
  if [[ -n $ROOT && -f $ROOT/.netkit-fresh ]]; then
    MODE="REUSED"; say "reusing the root $ROOT (not fresh: for debugging)"; BUILD_S=0
  else
    if [[ -z $ROOT ]]; then ROOT=$WORK/root; elif [[ -e $ROOT && -n $(ls -A "$ROOT") ]]; then
      ROOT=""; die "--root: not empty and not a root this script built"
    fi
    t=$SECONDS; build_root "$ROOT"; BUILD_S=$((SECONDS - t))
  fi
  copy_checkout "$ROOT"
  say "step 1: ./setup.sh deps (machine's network)"
  t=$SECONDS; step deps || rc=$?; DEPS_S=$((SECONDS - t))
  ((rc == 0)) || die "./setup.sh deps failed (exit $rc)"
  if ((DEMO)); then
    say "step 2: ./setup.sh demo && ./setup.sh test${pytest_args[*]:+ ${pytest_args[*]}} (new network namespace)"
    t=$SECONDS; step demo --net "${pytest_args[@]}" || rc=$?; TEST_S=$((SECONDS - t))
  else
    say "step 2: ./setup.sh test${pytest_args[*]:+ ${pytest_args[*]}} (new network namespace)"
    t=$SECONDS; step test --net "${pytest_args[@]}" || rc=$?; TEST_S=$((SECONDS - t))
  fi
  exit "$rc"
}

if [[ ${1:-} == --inside ]]; then shift; inside "$@"; fi
main "$@"
