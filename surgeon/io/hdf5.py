"""Shared helpers for reading and writing Keras' name-based HDF5 layout."""

from __future__ import annotations

import json

import numpy as np

from surgeon.errors import SurgeonError

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
