"""Decode protocol-buffer messages from their wire format, without generated classes.

The few messages surgeon reads from a SavedModel directory (Keras' ``SavedMetadata``, TensorFlow's
checkpoint index entries and object graph) have a handful of fields each. Their generated Python
modules live inside the ``tensorflow`` package, whose import alone takes seconds; the wire format
(https://protobuf.dev/programming-guides/encoding/) takes a few lines. Malformed bytes raise
ValueError, which readers turn into a one-line error naming the file.
"""

from __future__ import annotations

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


def read_varint(data: bytes, position: int) -> tuple[int, int]:
    """The varint at ``position`` and the position after it."""
    result = shift = 0
    while True:
        if position >= len(data):
            raise ValueError("truncated varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """``(field number, value)`` pairs in order: ints for varint and fixed fields, bytes for
    length-delimited ones (strings, bytes, nested messages, packed repeated fields).

    Example:
        >>> fields(b"\\x08\\x96\\x01\\x12\\x02hi")
        [(1, 150), (2, b'hi')]
    """
    result: list[tuple[int, int | bytes]] = []
    position = 0
    while position < len(data):
        key, position = read_varint(data, position)
        number, kind = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if kind == VARINT:
            value, position = read_varint(data, position)
        elif kind == LENGTH:
            length, position = read_varint(data, position)
            if position + length > len(data):
                raise ValueError("length-delimited field runs past the end")
            value, position = bytes(data[position:position + length]), position + length
        elif kind in (FIXED64, FIXED32):
            width = 8 if kind == FIXED64 else 4
            if position + width > len(data):
                raise ValueError("truncated fixed-width field")
            value, position = int.from_bytes(data[position:position + width], "little"), position + width
        else:
            raise ValueError(f"unsupported wire type {kind}")
        result.append((number, value))
    return result


def message(data: bytes, schema: dict[int, tuple[str, str]]) -> dict:
    """Decode ``data`` by a schema ``{number: (name, kind)}``; kind is ``int``, ``str``, ``bytes``,
    or any of those prefixed ``repeated `` (a list). Unknown fields are skipped, absent ones get
    proto3 defaults (0, "", b"", []).

    Example:
        >>> message(b"\\x08\\x07\\x12\\x01a\\x12\\x01b", {1: ("id", "int"), 2: ("names", "repeated str")})
        {'id': 7, 'names': ['a', 'b']}
    """
    defaults = {"int": 0, "str": "", "bytes": b""}
    decoded: dict = {}
    for name, kind in schema.values():
        decoded[name] = [] if kind.startswith("repeated ") else defaults[kind]
    for number, value in fields(data):
        if number not in schema:
            continue
        name, kind = schema[number]
        base = kind.removeprefix("repeated ")
        if base == "int":
            if not isinstance(value, int):
                raise ValueError(f"field {name}: expected an integer")
            value = value - (1 << 64) if value >= 1 << 63 else value  # int32/int64 negatives are 10-byte varints
        else:
            if not isinstance(value, bytes):
                raise ValueError(f"field {name}: expected a length-delimited value")
            if base == "str":
                value = value.decode("utf-8")  # UnicodeDecodeError is a ValueError
        if kind.startswith("repeated "):
            decoded[name].append(value)
        else:
            decoded[name] = value
    return decoded
