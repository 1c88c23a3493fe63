"""Shared helpers for reading and writing Keras' name-based HDF5 layout."""

from __future__ import annotations

import json

import numpy as np

from surgeon.errors import SurgeonError
from surgeon.spec import WeightShape

# Keras splits attributes larger than an HDF5 object header into numbered chunks
# (keras/src/legacy/saving/legacy_h5_format.py: save_attributes_to_hdf5_group).
HDF5_OBJECT_HEADER_LIMIT = 64512


def decode(value) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)


def read_name_list(group, name: str) -> list[str]:
    if name in group.attrs:
        return [decode(item) for item in group.attrs[name]]
    names: list[str] = []
    chunk = 0
    while f"{name}{chunk}" in group.attrs:
        names.extend(decode(item) for item in group.attrs[f"{name}{chunk}"])
        chunk += 1
    return names


def write_name_list(group, name: str, values: list[str]) -> None:
    data = np.array([value.encode("utf-8") for value in values])
    if data.nbytes <= HDF5_OBJECT_HEADER_LIMIT or not len(values):
        group.attrs[name] = data if len(values) else np.array([], dtype="float64")
        return
    chunks = 1
    while any(part.nbytes > HDF5_OBJECT_HEADER_LIMIT for part in np.array_split(data, chunks)):
        chunks += 1
    for index, part in enumerate(np.array_split(data, chunks)):
        group.attrs[f"{name}{index}"] = part


def read_json_attr(handle, name: str, path: str):
    raw = handle.attrs.get(name)
    if raw is None:
        return None
    try:
        return json.loads(decode(raw))
    except (ValueError, UnicodeDecodeError):
        raise SurgeonError(f"the '{name}' stored in '{path}' is not valid JSON; the file is corrupt") from None


# A compressed dataset may legitimately declare more bytes than it stores (Keras never compresses,
# but h5py users may); beyond this ratio the declaration is not believable.
MAX_COMPRESSION_RATIO = 1000


def read_dataset(dataset, values: bool, where: str):
    """A weight's array (or only its shape with ``values=False``), checked before anything is allocated.

    A damaged or hostile file can declare a shape of 10^12 elements in a few bytes; reading it
    would try to allocate terabytes. The declared size is compared with what the file stores.
    """
    import h5py

    if not isinstance(dataset, h5py.Dataset):
        raise SurgeonError(f"'{dataset.name}' in {where} should be a weight array but is a {type(dataset).__name__}; the file is corrupt")
    name = dataset.name
    if dataset.dtype.kind not in "biuf":
        raise SurgeonError(f"weight '{name}' in {where} holds {dataset.dtype} data, not numbers; the file is corrupt")
    declared = int(np.prod(dataset.shape, dtype=object)) * dataset.dtype.itemsize if dataset.shape else dataset.dtype.itemsize
    stored = dataset.id.get_storage_size()
    compressed = dataset.chunks is not None and dataset.id.get_create_plist().get_nfilters() > 0
    limit = stored * MAX_COMPRESSION_RATIO + 2**20 if compressed else stored
    if declared > limit:
        raise SurgeonError(
            f"weight '{name}' in {where} declares shape {tuple(dataset.shape)} ({declared:,} bytes) but the file "
            f"stores {stored:,} bytes for it; the file is truncated or corrupt"
        )
    return dataset[()] if values else WeightShape(tuple(dataset.shape), dataset.dtype)
