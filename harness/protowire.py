"""The protobuf wire format, as much of it as the CRI test client needs (harness/cri.py).

Why our own: the CRI messages are few and their field numbers are public API, so writing them down
(harness/cri.py) and encoding them here costs less than generating Python from the CRI .proto files
(protoc, grpcio-tools and the protobuf runtime, and a vendored copy of the .proto), and keeps the test
readable: what is sent is visible in one place.  Only proto3's wire types 0 (varint) and 2
(length-delimited: strings, bytes, nested messages, map entries) are written; a decoded message keeps
every field it met, fixed 32/64-bit ones as raw integers.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Mapping

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


class WireError(ValueError):
    """Bytes that are not a protobuf message."""


def varint(value: int) -> bytes:
    """``value`` as a base-128 varint; a negative int32/int64 as its 64-bit two's complement."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _key(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def uint(number: int, value: int) -> bytes:
    """A varint field (int32, int64, uint32, bool, enum); proto3 omits the default 0."""
    return _key(number, VARINT) + varint(int(value)) if value else b""


def blob(number: int, value: bytes) -> bytes:
    """A length-delimited field, always written (an empty nested message still says it is there)."""
    return _key(number, LENGTH) + varint(len(value)) + value


def string(number: int, value: str) -> bytes:
    """A string field; proto3 omits the empty string."""
    return blob(number, value.encode()) if value else b""


def strings(number: int, values: Iterable[str]) -> bytes:
    """A repeated string field."""
    return b"".join(blob(number, v.encode()) for v in values)


def messages(number: int, values: Iterable[bytes]) -> bytes:
    """A repeated message field of encoded messages."""
    return b"".join(blob(number, v) for v in values)


def string_map(number: int, values: Mapping[str, str]) -> bytes:
    """A map<string, string> field: one entry message (key = 1, value = 2) per item."""
    return b"".join(blob(number, string(1, k) + string(2, v)) for k, v in sorted(values.items()))


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise WireError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def decode(data: bytes) -> dict[int, list[int | bytes]]:
    """Field number -> the values met, in order (varints and fixed fields as ints, the rest as bytes)."""
    fields: dict[int, list[int | bytes]] = defaultdict(list)
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == VARINT:
            value, pos = _read_varint(data, pos)
            fields[number].append(value)
        elif wire_type == LENGTH:
            size, pos = _read_varint(data, pos)
            if pos + size > len(data):
                raise WireError(f"field {number} runs past the end")
            fields[number].append(data[pos:pos + size])
            pos += size
        elif wire_type in (FIXED64, FIXED32):
            width = 8 if wire_type == FIXED64 else 4
            if pos + width > len(data):  # a slice past the end is short, not an error: check it
                raise WireError(f"field {number} runs past the end")
            fields[number].append(int.from_bytes(data[pos:pos + width], "little"))
            pos += width
        else:
            raise WireError(f"field {number}: wire type {wire_type} is not proto3's")
    return dict(fields)


def first(fields: Mapping[int, list[int | bytes]], number: int, default: int | bytes = b"") -> int | bytes:
    """The last value of a singular field (protobuf's rule: the last one wins), or ``default``."""
    values = fields.get(number)
    return values[-1] if values else default


def text(fields: Mapping[int, list[int | bytes]], number: int) -> str:
    """A singular string field."""
    value = first(fields, number)
    return value.decode() if isinstance(value, bytes) else ""


def number(fields: Mapping[int, list[int | bytes]], number_: int) -> int:
    """A singular varint field."""
    value = first(fields, number_, 0)
    return value if isinstance(value, int) else 0


def nested(fields: Mapping[int, list[int | bytes]], number_: int) -> dict[int, list[int | bytes]]:
    """A singular message field, decoded (empty when absent)."""
    value = first(fields, number_)
    return decode(value) if isinstance(value, bytes) else {}


def decoded_map(fields: Mapping[int, list[int | bytes]], number_: int) -> dict[str, str]:
    """A map<string, string> field."""
    out = {}
    for entry in fields.get(number_, []):
        if isinstance(entry, bytes):
            kv = decode(entry)
            out[text(kv, 1)] = text(kv, 2)
    return out
