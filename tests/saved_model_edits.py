"""Make damaged copies of a SavedModel directory (for test_bad_inputs and test_fuzz): re-encode its
``keras_metadata.pb`` and rewrite its checkpoint index without TensorFlow, by the formats that
``surgeon.io.protobuf_wire`` and ``surgeon.io.tf_checkpoint`` document."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

from surgeon.io.protobuf_wire import fields, message
from surgeon.io.tf_checkpoint import _TABLE_MAGIC, _table_entries


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    return varint(number << 3 | 2) + varint(len(value)) + value


def copy_saved_model(source: str, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def edit_metadata(directory: Path, edit: Callable[[list[dict]], None]) -> Path:
    """Decode keras_metadata.pb into [{"node_path", "identifier", "metadata" (dict)}], edit, re-encode."""
    path = directory / "keras_metadata.pb"
    nodes = []
    for raw in message(path.read_bytes(), {1: ("nodes", "repeated bytes")})["nodes"]:
        node = message(raw, {2: ("node_id", "int"), 3: ("node_path", "str"), 4: ("identifier", "str"), 5: ("metadata", "str")})
        node["metadata"] = json.loads(node["metadata"]) if node["metadata"] else {}
        nodes.append(node)
    edit(nodes)
    data = b""
    for node in nodes:
        body = (field(2, node["node_id"]) + field(3, node["node_path"].encode()) + field(4, node["identifier"].encode())
                + field(5, json.dumps(node["metadata"]).encode()))
        data += field(1, body)
    path.write_bytes(data)
    return directory


def edit_index(directory: Path, edit: Callable[[dict[str, bytes]], None]) -> Path:
    """Rewrite variables/variables.index (one data block, one index block) after ``edit(entries)``."""
    path = directory / "variables" / "variables.index"
    entries = _table_entries(path.read_bytes())
    edit(entries)
    data_block = _block(sorted((key.encode(), value) for key, value in entries.items()))
    trailer = b"\x00\x00\x00\x00\x00"  # no compression; the checksum is not checked by the reader
    last_key = max(key.encode() for key in entries) + b"\xff" if entries else b"\xff"
    index_block = _block([(last_key, varint(0) + varint(len(data_block)))])
    index_offset = len(data_block) + len(trailer)
    footer = (varint(0) + varint(0) + varint(index_offset) + varint(len(index_block))).ljust(40, b"\x00")
    footer += _TABLE_MAGIC.to_bytes(8, "little")
    path.write_bytes(data_block + trailer + index_block + trailer + footer)
    return directory


def _block(items: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(varint(0) + varint(len(key)) + varint(len(value)) + key + value for key, value in items)
    return body + (0).to_bytes(4, "little") + (1).to_bytes(4, "little")  # one restart point at 0


def variable_keys(directory: Path) -> list[str]:
    entries = _table_entries((directory / "variables" / "variables.index").read_bytes())
    return sorted(key for key in entries if key.endswith("VARIABLE_VALUE"))


__all__ = ["copy_saved_model", "edit_metadata", "edit_index", "variable_keys", "fields", "field", "varint"]
