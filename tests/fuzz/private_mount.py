"""Run plugin commands with a small tmpfs (read-only or full) mounted in a private mount namespace.

Usage (as root): ``unshare --mount --propagation private -- python private_mount.py SPEC_JSON``

SPEC: ``{"mount": DIR, "size": "64k", "prepare": [DIR...], "files": {PATH: TEXT}, "state": "ro" | "full",
"steps": [{"argv": [...], "env": {...}, "stdin": TEXT} | {"free": true}]}``.  Mounts a tmpfs on DIR,
creates the ``prepare`` directories and ``files``, then makes it read-only or fills it to the last byte, runs each
step and prints one JSON line: per step its exit status, stdout and the files then under DIR (with
their sizes), so the caller sees what a failure left on a disk it cannot see itself.  The mount
dies with the namespace; nothing outside changes.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

FILLER = ".filler"


def _files(root: str) -> dict[str, int]:
    out = {}
    for d, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(d, name)
            if name != FILLER:
                out[os.path.relpath(path, root)] = os.lstat(path).st_size
    return out


def _fill(root: str) -> None:
    with open(os.path.join(root, FILLER), "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 1024)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        try:  # the last partial block
            while True:
                f.write(b"\0")
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise


def main(spec: dict) -> None:
    root = spec["mount"]
    os.makedirs(root, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={spec.get('size', '64k')},mode=0755", "tmpfs", root],
                   check=True)
    for d in spec.get("prepare", []):
        os.makedirs(d, exist_ok=True)
    for name, text in spec.get("files", {}).items():
        with open(name, "w", encoding="utf-8") as f:
            f.write(text)
    if spec.get("state") == "ro":
        subprocess.run(["mount", "-o", "remount,ro", root], check=True)
    elif spec.get("state") == "full":
        _fill(root)
    results = []
    for step in spec["steps"]:
        if step.get("free"):
            os.unlink(os.path.join(root, FILLER))
            results.append({"freed": True})
            continue
        proc = subprocess.run(step["argv"], input=step.get("stdin", "").encode(), env=step["env"],
                              capture_output=True, timeout=60)
        results.append({"rc": proc.returncode, "stdout": proc.stdout.decode(errors="replace"),
                        "stderr": proc.stderr.decode(errors="replace"), "files": _files(root)})
    print(json.dumps(results))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
