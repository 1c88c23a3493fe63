"""Read a Keras 3 ``.keras`` archive into a ModelSpec with zipfile, json and h5py alone.

The archive holds ``config.json`` (the serialized model), ``metadata.json`` and
``model.weights.h5``. In the weights file each layer is a group ``.../layers/<object name>`` whose
``vars`` subgroup stores the variables as ``0, 1, ...`` in ``layer.weights`` order, with the
layer's own name in the ``name`` attribute (Keras >= 3.6); nested models add their own
``layers`` subgroup. Optimizer slots live under ``optimizer/vars``.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
import zlib

import h5py

from surgeon.errors import SurgeonError
from surgeon.io.consistency import check_layer_entries, check_spec
from surgeon.io.dialects import Door, translate
from surgeon.io.files import ZIP_SIGNATURE, read_head
from surgeon.io.hdf5 import decode, read_dataset
from surgeon.io.stored_zip import FileWindow
from surgeon.spec import ModelSpec, Source, is_model_config, iter_layers
from surgeon.weight_names import weight_names

CONFIG = "config.json"
METADATA = "metadata.json"
WEIGHTS = "model.weights.h5"
ASSETS = "assets/"


def claims_keras(path: str) -> bool:
    """A zip archive (by its signature): a Keras 3 ``.keras`` file. A damaged zip is refused here."""
    if os.path.isdir(path) or not read_head(path).startswith(ZIP_SIGNATURE):
        return False
    if not zipfile.is_zipfile(path):
        raise SurgeonError(f"'{path}' is a truncated or corrupt zip file; the .keras file is damaged, save or download it again")
    return True


def open_archive(path: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise SurgeonError(f"'{path}' is a truncated or corrupt .keras file; save or download it again") from None


def read_archive_config(archive: zipfile.ZipFile, path: str) -> tuple[dict, str | None]:
    """The archive's ``config.json`` and the ``keras_version`` of its ``metadata.json`` (None if absent)."""
    names = set(archive.namelist())
    if CONFIG not in names:
        raise SurgeonError(f"'{path}' is a zip file without {CONFIG}; it is not a Keras 3 .keras model")
    try:
        config = json.loads(archive.read(CONFIG))
        metadata = json.loads(archive.read(METADATA)) if METADATA in names else {}
    except (ValueError, zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:  # zlib: a damaged deflated member
        raise SurgeonError(f"cannot read the config inside '{path}' ({error}); the file is corrupt") from None
    if not isinstance(config, dict):
        raise SurgeonError(f"the config inside '{path}' is not a JSON object; the file is corrupt")
    version = metadata.get("keras_version") if isinstance(metadata, dict) else None
    return config, version if isinstance(version, str) else None


def read_keras(path: str, *, values: bool = True) -> ModelSpec:
    with open_archive(path) as archive:
        names = set(archive.namelist())
        config, version = read_archive_config(archive, path)
        compile_config = config.pop("compile_config", None)
        door = _translate(config, version, path)
        spec = ModelSpec(
            config=door.config,
            weights={},
            compile_config=compile_config or None,
            source=Source(path=path, format="keras", keras_version=version, dialect=door.dialect),
            notes=door.notes,
        )
        if WEIGHTS not in names:
            raise SurgeonError(f"'{path}' has no {WEIGHTS}; the .keras file is incomplete, save it again")
        try:
            weights_file = open_member(archive, path)
            assets = {name: archive.read(name) for name in names if name.startswith(ASSETS) and not name.endswith("/")}
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
            raise SurgeonError(f"cannot read the weights inside '{path}' ({error}); the file is corrupt") from None
    try:
        with weights_file, h5py.File(weights_file, "r") as handle:
            objects: dict[str, str] = {}
            spec.weights = door.map_weights(_read_weights(handle, spec.config, values, path, objects))
            spec.optimizer_variables = _optimizer_variables(handle)
    except OSError:
        raise SurgeonError(f"the weights inside '{path}' are not a valid HDF5 file; the file is corrupt") from None
    except (KeyError, ValueError, TypeError, RuntimeError, AttributeError, IndexError) as error:
        # RuntimeError: h5py on corrupt B-trees and heaps (found by fuzzing bytes: tests/test_fuzz.py).
        raise SurgeonError(f"the weights inside '{path}' are damaged ({error}); save the model again") from None
    spec.assets = _layer_assets(assets, objects)
    check_spec(spec)
    return spec


def _layer_assets(files: dict[str, bytes], objects: dict[str, str]) -> dict[str, dict[str, bytes]]:
    """``assets/<object path>/<file>`` -> {layer path: {path below the layer's object: bytes}}."""
    found: dict[str, dict[str, bytes]] = {}
    for name, data in files.items():
        inner = name[len(ASSETS):]
        owner = max((o for o in objects if inner.startswith(o + "/")), key=len, default=None)
        if owner is None:
            raise SurgeonError(f"the .keras file holds asset '{name}' of no layer of the model; the file is inconsistent")
        found.setdefault(objects[owner], {})[inner[len(owner) + 1:]] = data
    return found


def _translate(config: dict, version: str | None, path: str) -> Door:
    check_layer_entries(config)
    try:
        return translate(config, None, version)
    except (KeyError, ValueError, TypeError, AttributeError, IndexError) as error:
        # A malformed config trips the translation somewhere deep inside; the file is at fault.
        raise SurgeonError(f"the config inside '{path}' is malformed ({type(error).__name__}: {error}); the file is corrupt") from None


def open_member(archive: zipfile.ZipFile, path: str):
    info = archive.getinfo(WEIGHTS)
    if info.compress_type != zipfile.ZIP_STORED:
        return io.BytesIO(archive.read(WEIGHTS))
    with open(path, "rb") as raw:
        raw.seek(info.header_offset)
        header = raw.read(30)
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile("bad local file header")
    name_length = int.from_bytes(header[26:28], "little")
    extra_length = int.from_bytes(header[28:30], "little")
    start = info.header_offset + 30 + name_length + extra_length
    return FileWindow(open(path, "rb"), start, info.file_size, owns=True)


def _optimizer_variables(handle: h5py.File) -> list[str] | None:
    if "optimizer" not in handle or "vars" not in handle["optimizer"]:
        return None
    return sorted(handle["optimizer/vars"].keys(), key=int)


def _read_weights(handle: h5py.File, model_config: dict, values: bool, path: str, objects: dict[str, str]) -> dict[str, dict]:
    """Walk the object tree and key each layer's variables by its layer path.

    A layer that owns layers (an RNN's ``cell``, Bidirectional's ``forward_layer``, attention's
    ``_query_dense``) stores their variables in groups named by attribute below its own group
    (keras/src/saving/saving_lib.py: ``_save_state`` walks every attribute that is saveable).
    Such a layer's weights are keyed by those object paths (``forward_layer/cell/vars/0``), which
    Keras itself resolves when the model is built (surgeon/io/object_paths.py). ``objects`` is
    filled with each layer's object path (``layers/integer_lookup``) -> layer path.
    """
    known = dict(iter_layers(model_config))
    weights: dict[str, dict] = {}

    def walk(group: h5py.Group, prefix: str) -> None:
        if "layers" not in group:
            return
        for child in group["layers"].values():
            if not isinstance(child, h5py.Group) or "vars" not in child:
                continue
            name = decode(child["vars"].attrs.get("name", ""))
            if not name:
                raise SurgeonError(
                    f"'{path}' was written by a Keras older than 3.6 (no layer names in its weights); "
                    "load and save it again with a current Keras"
                )
            layer_path = prefix + name
            objects[child.name.lstrip("/")] = layer_path
            layer = known.get(layer_path, {})
            owned = [] if is_model_config(layer) else _owned_variables(child)
            if owned:
                weights[layer_path] = {n: read_dataset(d, values, f"'{path}'") for n, d in owned}
            else:
                variables = child["vars"]
                count = len(variables)
                if count:
                    names = weight_names(layer.get("class_name", ""), layer.get("config", {}), count)
                    stored = [variables[str(index)] for index in range(count)]
                    weights[layer_path] = {n: read_dataset(d, values, f"'{path}'") for n, d in zip(names, stored)}
            walk(child, layer_path + "/")

    walk(handle, "")
    return weights


def _owned_variables(group: h5py.Group) -> list[tuple[str, h5py.Dataset]]:
    """``(object path, dataset)`` of the variables of the layers a layer owns; [] when it owns none."""
    found: list[tuple[str, h5py.Dataset]] = []

    def walk(node: h5py.Group, prefix: str) -> None:
        for key, child in node.items():
            if not isinstance(child, h5py.Group):
                continue
            if key == "vars":
                found.extend((f"{prefix}vars/{index}", child[str(index)]) for index in range(len(child)))
            else:
                walk(child, f"{prefix}{key}/")

    for key, child in group.items():
        if key not in ("vars", "layers") and isinstance(child, h5py.Group):
            walk(child, f"{key}/")
    if not found:
        return []
    own = group["vars"]
    return [(f"vars/{index}", own[str(index)]) for index in range(len(own))] + found
