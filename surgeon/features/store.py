"""A directory of feature shards and the manifest that makes them one array.

Layout of ``OUT/``::

    manifest.json             what the shards are: base hash, data, sample order, shapes, dtype
    sources.txt               where each sample comes from: "<samples>\\t<file>" per source file,
                              in sample order (an image is one sample; an .npy shard its rows)
    part-000000.<key>.npy     samples [0, shard_size) of each base output
    part-000000-labels.npy    their labels (image folders)
    part-000001.<key>.npy     ...

A shard counts as done only once the manifest lists it. Its files are written under temporary
names and renamed into place before the manifest (itself replaced atomically) records them, so a
run killed at any moment leaves either a recorded shard or nothing that counts; the next run with
the same base, data and settings computes only the shards the manifest lacks. A run on a directory
made from another base (its SHA-256 differs) or other data is refused, so shards of two base files
never mix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Iterator, Mapping

import numpy as np

from surgeon.errors import SurgeonError

MANIFEST = "manifest.json"
SOURCES = "sources.txt"
FORMAT = "surgeon-features"
VERSION = 1
TEMPORARY_MARK = ".surgeon-tmp"


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shard_file_names(index: int, keys: list[str], labels: bool) -> tuple[dict[str, str], str | None]:
    # "-labels" cannot clash with a key: keys sit after a dot.
    return {key: f"part-{index:06d}.{key}.npy" for key in keys}, (f"part-{index:06d}-labels.npy" if labels else None)


def temporary_name(directory: str, name: str) -> str:
    return os.path.join(directory, f".{name}.{os.getpid()}{TEMPORARY_MARK}")


def replace_durably(temporary: str, target: str) -> None:
    """Rename after the bytes are on disk, so a recorded shard survives a power cut too."""
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, target)


@dataclasses.dataclass
class Shard:
    index: int
    start: int
    stop: int


class FeatureStore:
    """The manifest of an output directory: what is planned, what is done; the driver's view."""

    def __init__(self, directory: str, manifest: dict):
        self.directory = directory
        self.manifest = manifest

    @property
    def shards(self) -> list[Shard]:
        size, count = self.manifest["shard_size"], self.manifest["data"]["count"]
        return [Shard(i, start, min(start + size, count)) for i, start in enumerate(range(0, count, size))]

    @property
    def done(self) -> dict[int, dict]:
        return {record["index"]: record for record in self.manifest["shards"]}

    def pending(self) -> list[Shard]:
        done = self.done
        return [shard for shard in self.shards if shard.index not in done]

    def record(self, record: dict) -> None:
        """Add a finished shard (its files already in place) and rewrite the manifest atomically."""
        shapes, dtypes = record.pop("shapes"), record.pop("dtypes")
        count = self.manifest["data"]["count"]
        features = {key: {"shape": [count] + shape[1:], "dtype": dtype} for key, shape, dtype in zip(self.manifest["keys"], shapes, dtypes)}
        if self.manifest["features"] is None:
            self.manifest["features"] = features
        elif features != self.manifest["features"]:
            raise SurgeonError(f"shard {record['index']} has features {features}, other shards {self.manifest['features']}; the data changed while being read")
        self.manifest["shards"] = sorted(self.manifest["shards"] + [record], key=lambda r: r["index"])
        self._write_manifest()

    def _write_manifest(self) -> None:
        _write_text(self.directory, MANIFEST, json.dumps(self.manifest, indent=1))


def _write_text(directory: str, name: str, text: str) -> None:
    temporary = temporary_name(directory, name)
    with open(temporary, "w") as handle:
        handle.write(text)
    replace_durably(temporary, os.path.join(directory, name))


def open_store(directory: str, *, plan: dict, sources: list[tuple[str, int]], force: bool, inputs: tuple[str, ...]) -> FeatureStore:
    """Create the output directory, or resume the run recorded in it if ``plan`` matches.

    ``plan`` holds what makes two runs the same run: the base's hash, the data (its sources'
    fingerprint and count), batch and shard size. Anything else in the directory is refused.
    """
    directory = os.path.abspath(directory)
    parent = os.path.dirname(directory)
    if not os.path.isdir(parent):
        raise SurgeonError(f"the output directory '{parent}' does not exist; create it first")
    for source in inputs:
        source = os.path.abspath(source)
        if directory == source or directory.startswith(source.rstrip(os.sep) + os.sep):
            raise SurgeonError(f"the output '{directory}' is (inside) the input '{source}'; surgeon never modifies its input: choose another -o")
    manifest_path = os.path.join(directory, MANIFEST)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise SurgeonError(f"'{directory}' is a file; a directory of shards needs a new name or an existing features directory")
    if os.path.isdir(directory) and os.listdir(directory):
        if not os.path.exists(manifest_path):
            raise SurgeonError(f"'{directory}' is not empty and holds no {MANIFEST}; choose a new or empty directory for the shards")
        existing = _read_manifest(directory)
        if force:
            _remove_run(directory, existing)
        else:
            _check_same_run(directory, existing, plan)
            _remove_temporaries(directory)
            store = FeatureStore(directory, existing)
            # A shard whose files went missing is computed again.
            store.manifest["shards"] = [r for r in existing["shards"] if _files_present(directory, r)]
            return store
    if not os.access(parent, os.W_OK):
        raise SurgeonError(f"cannot write to '{parent}': permission denied")
    os.makedirs(directory, exist_ok=True)
    _write_text(directory, SOURCES, "".join(f"{count}\t{name}\n" for name, count in sources))
    store = FeatureStore(directory, {"format": FORMAT, "version": VERSION, **plan, "features": None, "shards": []})
    store._write_manifest()
    return store


def _read_manifest(directory: str) -> dict:
    try:
        with open(os.path.join(directory, MANIFEST)) as handle:
            manifest = json.load(handle)
    except (OSError, ValueError) as error:
        raise SurgeonError(f"cannot read '{os.path.join(directory, MANIFEST)}': {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SurgeonError(f"'{directory}' is not a surgeon features directory ({MANIFEST} has no format '{FORMAT}')")
    if manifest.get("version") != VERSION:
        raise SurgeonError(f"'{directory}' was written by another surgeon version (format version {manifest.get('version')}, this one reads {VERSION})")
    return manifest


def _check_same_run(directory: str, existing: dict, plan: dict) -> None:
    if existing["base"]["sha256"] != plan["base"]["sha256"]:
        raise SurgeonError(
            f"'{directory}' holds features of another base file (SHA-256 {existing['base']['sha256'][:12]}..., this one "
            f"{plan['base']['sha256'][:12]}...); choose another -o, or pass --force to start over"
        )
    for what, key in (("data", "data"), ("batch size", "batch_size"), ("shard size", "shard_size"), ("base outputs", "keys")):
        if existing.get(key) != plan.get(key):
            raise SurgeonError(f"'{directory}' was started with other {what}; rerun with the same settings to resume, choose another -o, or pass --force to start over")


def _files_present(directory: str, record: dict) -> bool:
    names = list(record["files"].values()) + ([record["labels"]] if record.get("labels") else [])
    return all(os.path.exists(os.path.join(directory, name)) for name in names)


def _remove_temporaries(directory: str) -> None:
    # Left by a killed run; two runs writing one directory at once are not supported.
    for name in os.listdir(directory):
        if name.endswith(TEMPORARY_MARK):
            os.unlink(os.path.join(directory, name))


def _remove_run(directory: str, manifest: dict) -> None:
    """--force: remove only what a features run writes, never other files."""
    _remove_temporaries(directory)
    for name in os.listdir(directory):
        if name in (MANIFEST, SOURCES) or (name.startswith("part-") and name.endswith(".npy")):
            os.unlink(os.path.join(directory, name))


# --- reading -----------------------------------------------------------------------------------


class ShardedArray:
    """Memory-mapped shards read as one array along the first axis (read-only).

    Indexing with an int, a slice or an array of indices returns a numpy array of just those
    samples; ``np.asarray(x)`` reads everything.
    """

    def __init__(self, parts: list[np.ndarray]):
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(p) for p in parts])
        self.shape = (int(self.offsets[-1]),) + tuple(parts[0].shape[1:])
        self.dtype = parts[0].dtype
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"ShardedArray(shape={self.shape}, dtype={self.dtype}, shards={len(self.parts)})"

    def __array__(self, dtype=None, copy=None):
        whole = np.concatenate([np.asarray(p) for p in self.parts]) if self.parts else np.empty(self.shape, self.dtype)
        return whole.astype(dtype, copy=False) if dtype is not None else whole

    def __iter__(self) -> Iterator[np.ndarray]:
        for part in self.parts:
            yield from part

    def __getitem__(self, index):
        rest = ()
        if isinstance(index, tuple):
            index, rest = (index[0], index[1:]) if index else (slice(None), ())
        if isinstance(index, (int, np.integer)):
            position = int(index) + (len(self) if index < 0 else 0)
            if not 0 <= position < len(self):
                raise IndexError(f"index {index} is out of bounds for {len(self)} samples")
            shard = int(np.searchsorted(self.offsets, position, side="right")) - 1
            return np.asarray(self.parts[shard][position - self.offsets[shard]])[rest]
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step == 1:
                pieces = [np.asarray(part[max(start - low, 0):max(min(stop, high) - low, 0)])
                          for part, low, high in zip(self.parts, self.offsets[:-1], self.offsets[1:]) if low < stop and high > start]
                selected = np.concatenate(pieces) if pieces else np.empty((0,) + self.shape[1:], self.dtype)
                return selected[(slice(None),) + rest]
            index = np.arange(start, stop, step)
        positions = np.asarray(index)
        if positions.dtype == bool:
            positions = np.flatnonzero(positions)
        positions = np.where(positions < 0, positions + len(self), positions)
        shards = np.searchsorted(self.offsets, positions, side="right") - 1
        out = np.empty((len(positions),) + self.shape[1:], self.dtype)
        for shard in np.unique(shards):
            chosen = shards == shard
            out[chosen] = self.parts[shard][positions[chosen] - self.offsets[shard]]
        return out[(slice(None),) + rest]


@dataclasses.dataclass
class Features(Mapping):
    """Features in sample order, one array per base output (keyed like the top's inputs)."""

    arrays: dict[str, np.ndarray | ShardedArray]
    labels: np.ndarray | ShardedArray | None
    class_names: list[str] | None
    sources: list[tuple[str, int]] | None  # (file, samples) in sample order; None for a single file
    manifest: dict | None

    def __getitem__(self, key: str):
        return self.arrays[key]

    def __iter__(self):
        return iter(self.arrays)

    def __len__(self) -> int:
        return len(self.arrays)

    @property
    def count(self) -> int:
        return len(next(iter(self.arrays.values())))

    @property
    def array(self):
        """The one array of a one-output base."""
        if len(self.arrays) != 1:
            raise KeyError(f"the base had {len(self.arrays)} outputs: pick one of {list(self.arrays)}")
        return next(iter(self.arrays.values()))

    def source(self, index: int) -> tuple[str, int]:
        """(file, row in it) that sample ``index`` was computed from."""
        if self.sources is None:
            raise ValueError("a single features file does not record its sources; write a directory of shards for that")
        offsets = np.cumsum([count for _, count in self.sources])
        position = int(np.searchsorted(offsets, index, side="right"))
        return self.sources[position][0], int(index - (offsets[position - 1] if position else 0))


def open_features(path: str) -> Features:
    """Open what ``surgeon features`` wrote, in sample order, memory-mapped.

    ``path`` is a directory of shards (its manifest says the order), an ``.npz`` (one array per
    base output) or an ``.npy`` (one array, keyed by the file's stem); labels of an image folder
    come along (``OUT_labels.npy`` beside a single file).

    Example:
        >>> features = open_features("features/")          # or "features.npy"
        >>> x, y = features.array[:1000], features.labels[:1000]
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        return _open_directory(path)
    if not os.path.exists(path):
        raise SurgeonError(f"no such file or directory: '{path}'")
    stem, extension = os.path.splitext(path)
    labels_path = stem + "_labels.npy"
    labels = np.load(labels_path, mmap_mode="r") if os.path.exists(labels_path) else None
    try:
        if extension.lower() == ".npz":
            from surgeon.features.data import part_arrays

            with np.load(path) as archive:
                keys = tuple(archive.files)
            arrays = dict(zip(keys, part_arrays(path, keys)))
        else:
            arrays = {os.path.basename(stem): np.load(path, mmap_mode="r", allow_pickle=False)}
    except (OSError, ValueError) as error:
        raise SurgeonError(f"cannot read '{path}' as features: {error}") from None
    return Features(arrays, labels, None, None, None)


def _open_directory(directory: str) -> Features:
    manifest = _read_manifest(directory)
    store = FeatureStore(directory, manifest)
    missing = [shard.index for shard in store.pending()]
    if missing:
        raise SurgeonError(
            f"'{directory}' is incomplete: {len(missing)} of {len(store.shards)} shards missing; "
            "rerun the same `surgeon features` command to finish it"
        )
    records = sorted(manifest["shards"], key=lambda r: r["index"])

    def load(name: str) -> np.ndarray:
        return np.load(os.path.join(directory, name), mmap_mode="r", allow_pickle=False)

    def joined(parts: list[np.ndarray]):
        return parts[0] if len(parts) == 1 else ShardedArray(parts)

    arrays = {key: joined([load(r["files"][key]) for r in records]) for key in manifest["keys"]}
    labels = joined([load(r["labels"]) for r in records]) if records[0].get("labels") else None
    with open(os.path.join(directory, SOURCES)) as handle:
        sources = [(name.rstrip("\n"), int(count)) for count, name in (line.split("\t", 1) for line in handle)]
    return Features(arrays, labels, manifest.get("class_names"), sources, manifest)
