"""Fixtures of the plugin tests beyond the suite's: netkit-dns's (tests/dns/helpers.py)."""

from tests.dns.helpers import dns  # noqa: F401 - fixture
