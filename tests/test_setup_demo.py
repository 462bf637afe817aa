"""`./setup.sh demo`, exactly as the README tells a new user to type it, in a throwaway machine
(tests/throwaway.py: its own network, mount and PID namespaces, netkit's default directories empty).
"""

from __future__ import annotations

import os

from tests import throwaway
from tests.throwaway import Step
from tests.untouched import machine_untouched

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(REPO, "demo", "index.html")
CURL = "setup.sh: curl http://127.0.0.1:8080/\n"


def test_demo_serves_its_own_page_and_no_host_files_and_leaves_what_the_readme_says() -> None:
    with machine_untouched():
        demo, files, link, netns, forward = throwaway.run([
            Step(["./setup.sh", "demo"], cwd=REPO, timeout=600),
            Step(["ls", "/opt/cni/bin", "/etc/cni/net.d", "/var/lib/netkit"]),
            Step(["ip", "-br", "link", "show", "netkit0"]),
            Step(["ip", "netns", "list"]),
            Step(["sysctl", "-n", "net.ipv4.ip_forward"]),
        ])
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert CURL in demo.stdout, demo.stdout
    served = demo.stdout.split(CURL, 1)[1].splitlines()[:5]
    assert not any("Directory listing" in line for line in served), served  # http.server's listing of its cwd
    with open(PAGE, encoding="utf-8") as f:
        assert served == f.read().splitlines()[:5], f"the demo served {served}, not {PAGE}"
    # What the README says the demo leaves on the (here throwaway) host: plugins, conflist, runtime
    # state, the bridge and forwarding; its namespace and its container are gone.
    assert files.returncode == 0, files.stderr
    assert {"netkit-bridge", "netkit-ipam", "netkit.conflist", "containers", "netns"} <= set(files.stdout.split())
    assert link.returncode == 0 and link.stdout.startswith("netkit0")
    assert netns.stdout.strip() == ""
    assert forward.stdout.strip() == "1"


def test_the_suite_passes_on_a_machine_the_demo_ran_on() -> None:
    # The README's two commands, one after the other on one (throwaway) machine: the demo leaves
    # `inet netkit`, netkit0 and ip_forward=1, which the suite's end-of-run check must not call its own.
    basetemp = "/var/tmp/netkit-suite"  # under a fresh dir: the inner run's temp files stay in the throwaway
    with machine_untouched():
        demo, suite = throwaway.run([
            Step(["./setup.sh", "demo"], cwd=REPO, timeout=600),
            Step(["./setup.sh", "test", "tests/test_install.py", "-q", "-p", "no:cacheprovider", f"--basetemp={basetemp}"],
                 cwd=REPO, timeout=900),
        ], fresh=(*throwaway.DEFAULT_DIRS, basetemp))
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "LEFT ON THE MACHINE" not in suite.stdout, suite.stdout
    assert suite.returncode == 0, suite.stdout[-3000:] + suite.stderr[-3000:]
