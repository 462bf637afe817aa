"""The launcher's request header is written without the json module: it must be what json writes."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from netkit import __version__
from netkit.agent import client
from tests.fuzz import derandomize, examples, seeded


@seeded
@settings(max_examples=examples(300, 3000), database=None, derandomize=derandomize())
@given(st.dictionaries(st.text(), st.text(), max_size=20), st.text(max_size=40))
def test_header_is_byte_for_byte_what_json_dumps_writes(env: dict[str, str], plugin: str) -> None:
    expected = json.dumps({"version": __version__, "plugin": plugin, "env": env}, separators=(",", ":"))
    assert client.header(plugin, env) == expected.encode()


def test_header_of_an_environment_with_undecodable_bytes_round_trips() -> None:
    env = {"CNI_ARGS": "K=\udcff\udc80", "X": 'quote " back \\ nl \n \x00 é 😀'}
    assert json.loads(client.header("netkit-bridge", env))["env"] == env
