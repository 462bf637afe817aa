"""Fixtures of the name-resolution tests (defined in helpers.py, shared with tests/plugins/test_dns.py)."""

from tests.dns.helpers import dns, dns_inproc  # noqa: F401 - fixtures
