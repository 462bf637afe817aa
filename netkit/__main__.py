"""``python -m netkit``: the same first step as the console script (netkit/cli/thin.py)."""

from netkit.cli.thin import main

main()
