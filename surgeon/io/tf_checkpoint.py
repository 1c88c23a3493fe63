"""Read a TensorFlow checkpoint (``variables/variables.index`` + ``.data-*`` shards) with numpy.

A SavedModel's weights are a TensorFlow "tensor bundle" (tensorflow/core/util/tensor_bundle):
``PREFIX.index`` is a LevelDB-style sorted table mapping each checkpoint key to a
``BundleEntryProto`` (dtype, shape, shard, offset, size), and ``PREFIX.data-0000N-of-0000M`` hold
the raw little-endian bytes. The key ``_CHECKPOINTABLE_OBJECT_GRAPH`` holds the serialized
``TrackableObjectGraph``: which object owns which variable. Reading this takes numpy and a few
lines, where ``tf.train.load_checkpoint`` takes the seconds of importing TensorFlow, so
``inspect`` on a SavedModel directory stays as fast as on an ``.h5`` file.
(tests/test_saved_model.py checks this reader against ``tf.train.load_checkpoint``.)
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from surgeon.errors import SurgeonError
from surgeon.io.protobuf_wire import fields, message, read_varint
from surgeon.spec import WeightShape

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
_BLOCK_TRAILER = 5  # compression type byte + crc32c
# TensorFlow DataType enum values (tensorflow/core/framework/types.proto) -> numpy.
_DTYPES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string", 9: "int64",
           10: "bool", 17: "uint16", 19: "float16", 22: "uint32", 23: "uint64"}


@dataclasses.dataclass(frozen=True)
class Entry:
    dtype: str
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int


@dataclasses.dataclass
class TrackableObject:
    children: list[tuple[str, int]]  # (local name, node id)
    variable_key: str | None  # checkpoint key of the object's VARIABLE_VALUE, if it is a variable


class Checkpoint:
    """The entries of a checkpoint and its object graph; values read on demand.

    Example:
        >>> checkpoint = Checkpoint("fixtures/keras2/tfk_flat_savedmodel/variables/variables", "tfk_flat_savedmodel/variables")
        >>> checkpoint.shape("layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE")
        WeightShape(shape=(3, 3, 3, 4), dtype=dtype('float32'))
    """

    def __init__(self, prefix: str, shown: str):
        self.prefix, self.shown = prefix, shown
        index = _read_file(prefix + ".index", shown)
        try:
            raw_entries = _table_entries(index)
            header = message(raw_entries.pop("", b""), {1: ("num_shards", "int"), 2: ("endianness", "int")})
            self.entries = {key: _entry(value) for key, value in raw_entries.items()}
        except (ValueError, IndexError) as error:
            raise SurgeonError(f"the checkpoint index in '{shown}' is damaged ({error}); save the model again") from None
        if header["endianness"] != 0:
            raise SurgeonError(f"the checkpoint in '{shown}' was written big-endian; re-save it on a little-endian machine")
        self.num_shards = max(1, header["num_shards"])
        self._shards: dict = {}  # shard number -> open file

    def shape(self, key: str) -> WeightShape:
        """Shape and dtype, checked against the bytes the data shard holds, without reading them."""
        entry = self._checked(key, self._shard_size(self.entries[key].shard))
        return WeightShape(entry.shape, np.dtype(entry.dtype))

    def read(self, key: str) -> np.ndarray:
        entry = self._checked(key, self._shard_size(self.entries[key].shard))
        raw = self._bytes(entry)
        count = int(np.prod(entry.shape, dtype=object))
        if entry.dtype == "string":
            try:
                return np.array(_strings(raw, count), dtype=object).reshape(entry.shape)
            except ValueError as error:
                raise SurgeonError(f"the checkpoint in '{self.shown}' is damaged ({error}); save the model again") from None
        return np.frombuffer(raw, dtype=np.dtype(entry.dtype).newbyteorder("<")).reshape(entry.shape).astype(entry.dtype)

    def _checked(self, key: str, shard_size: int) -> Entry:
        """A hostile index can declare 10^12 elements in a few bytes: compare with what is stored."""
        entry = self.entries[key]
        if entry.offset + entry.size > shard_size:
            raise SurgeonError(f"the checkpoint data in '{self.shown}' is truncated (variable '{key}'); copy or save the model again")
        if entry.dtype != "string" and int(np.prod(entry.shape, dtype=object)) * np.dtype(entry.dtype).itemsize != entry.size:
            raise SurgeonError(f"the checkpoint in '{self.shown}' declares {entry.shape} {entry.dtype} for '{key}' "
                               f"but stores {entry.size} bytes; the file is damaged, save the model again")
        return entry

    def object_graph(self) -> list[TrackableObject]:
        if OBJECT_GRAPH_KEY not in self.entries:
            raise SurgeonError(f"the checkpoint in '{self.shown}' has no object graph; it was not written by "
                               "model.save or tf.train.Checkpoint, save the model again")
        entry = self.entries[OBJECT_GRAPH_KEY]
        if entry.dtype != "string" or entry.shape != ():
            raise SurgeonError(f"the checkpoint object graph in '{self.shown}' is a {entry.dtype} tensor of shape {entry.shape}, "
                               "not a serialized graph; the checkpoint is damaged, save the model again")
        try:
            graph = message(self.read(OBJECT_GRAPH_KEY).item(), {1: ("nodes", "repeated bytes")})
            return [_trackable(node) for node in graph["nodes"]]
        except (ValueError, IndexError) as error:
            raise SurgeonError(f"the checkpoint object graph in '{self.shown}' is damaged ({error}); save the model again") from None

    def _shard_name(self, shard: int) -> str:
        return f"{self.prefix}.data-{shard:05d}-of-{self.num_shards:05d}"

    def _bytes(self, entry: Entry) -> bytes:
        """Only the entry's bytes: inspect reads the object graph, not the 100 MB of weights beside it."""
        if entry.shard not in self._shards:
            try:
                self._shards[entry.shard] = open(self._shard_name(entry.shard), "rb")
            except OSError:
                _read_file(self._shard_name(entry.shard), self.shown)  # the one-line error
                raise
        handle = self._shards[entry.shard]
        handle.seek(entry.offset)
        data = handle.read(entry.size)
        if len(data) != entry.size:
            raise SurgeonError(f"the checkpoint data in '{self.shown}' is truncated; copy or save the model again")
        return data

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for handle in self._shards.values():
            handle.close()
        self._shards.clear()

    def _shard_size(self, shard: int) -> int:
        try:
            return os.path.getsize(self._shard_name(shard))
        except OSError:
            _read_file(self._shard_name(shard), self.shown)  # the one-line error of a missing/unreadable shard
            raise


def _read_file(path: str, shown: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise SurgeonError(f"'{shown}' lacks {os.path.basename(path)}; the SavedModel is incomplete, copy or save it again") from None
    except OSError as error:
        raise SurgeonError(f"cannot read '{path}': {error.strerror}") from None


def _entry(value: bytes) -> Entry:
    decoded = message(value, {1: ("dtype", "int"), 2: ("shape", "bytes"), 3: ("shard", "int"), 4: ("offset", "int"),
                              5: ("size", "int"), 7: ("slices", "repeated bytes")})
    if decoded["slices"]:
        raise ValueError("partitioned (sliced) variables are not supported")
    if decoded["dtype"] not in _DTYPES:
        raise ValueError(f"unsupported dtype number {decoded['dtype']}")
    dims = [message(dim, {1: ("size", "int")})["size"] for number, dim in fields(decoded["shape"]) if number == 2]
    if any(d < 0 for d in dims) or decoded["offset"] < 0 or decoded["size"] < 0:
        raise ValueError("negative shape, offset or size")
    return Entry(_DTYPES[decoded["dtype"]], tuple(dims), decoded["shard"], decoded["offset"], decoded["size"])


def _trackable(node: bytes) -> TrackableObject:
    decoded = message(node, {1: ("children", "repeated bytes"), 2: ("attributes", "repeated bytes")})
    children = []
    for child in decoded["children"]:
        reference = message(child, {1: ("node_id", "int"), 2: ("local_name", "str")})
        children.append((reference["local_name"], reference["node_id"]))
    key = None
    for attribute in decoded["attributes"]:
        serialized = message(attribute, {1: ("name", "str"), 3: ("checkpoint_key", "str")})
        if serialized["name"] == "VARIABLE_VALUE":
            key = serialized["checkpoint_key"]
    return TrackableObject(children, key)


def _strings(raw: bytes, count: int) -> list[bytes]:
    """A string tensor: ``count`` varint lengths, a 4-byte checksum of them, then the bytes."""
    lengths, position = [], 0
    for _ in range(count):
        length, position = read_varint(raw, position)
        lengths.append(length)
    position += 4
    values = []
    for length in lengths:
        if position + length > len(raw):
            raise ValueError("string tensor runs past its entry")
        values.append(raw[position:position + length])
        position += length
    return values


def _table_entries(data: bytes) -> dict[str, bytes]:
    """Every key -> value of a LevelDB table (table/format.md): footer -> index block -> data blocks."""
    if len(data) < _FOOTER_SIZE or int.from_bytes(data[-8:], "little") != _TABLE_MAGIC:
        raise ValueError("not a checkpoint index (no table footer)")
    footer = data[-_FOOTER_SIZE:]
    _, position = read_varint(footer, 0)  # metaindex block: unused by TensorFlow
    _, position = read_varint(footer, position)
    index_offset, position = read_varint(footer, position)
    index_size, _ = read_varint(footer, position)
    entries: dict[str, bytes] = {}
    for _, handle in _block_entries(data, index_offset, index_size):
        offset, position = read_varint(handle, 0)
        size, _ = read_varint(handle, position)
        for key, value in _block_entries(data, offset, size):
            entries[key.decode("utf-8")] = value
    return entries


def _block_entries(data: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
    if offset + size + _BLOCK_TRAILER > len(data):
        raise ValueError("block runs past the end of the file")
    if data[offset + size] != 0:
        raise ValueError("compressed table blocks are not supported")
    block = data[offset:offset + size]
    if size < 4:
        raise ValueError("block too short")
    restarts = int.from_bytes(block[-4:], "little")
    end = size - 4 - 4 * restarts
    if end < 0:
        raise ValueError("bad restart count")
    entries, position, key = [], 0, b""
    while position < end:
        shared, position = read_varint(block, position)
        unshared, position = read_varint(block, position)
        length, position = read_varint(block, position)
        if shared > len(key) or position + unshared + length > end:
            raise ValueError("bad block entry")
        key = key[:shared] + block[position:position + unshared]
        position += unshared
        entries.append((key, bytes(block[position:position + length])))
        position += length
    return entries
