"""Read a whole-model ``.h5`` file (Keras 3 or Keras 2) into a ModelSpec with h5py alone.

Layout (keras/src/legacy/saving/legacy_h5_format.py): the attribute ``model_config`` holds the
model's JSON config, ``training_config`` how it was compiled; ``model_weights/<layer>`` holds each
top-level layer's weights, listed by the ``weight_names`` attribute as variable paths
(``conv1/kernel``; Keras 2 adds ``:0``). A nested model's group holds the weights of all its layers.
"""

from __future__ import annotations

import os

import h5py

from surgeon.errors import SurgeonError
from surgeon.io.compile_config import from_training_config
from surgeon.io.consistency import check_layer_entries, check_spec
from surgeon.io.dialects import translate
from surgeon.io.files import HDF5_SIGNATURE, read_head
from surgeon.io.hdf5 import decode, read_dataset, read_json_attr, read_name_list
from surgeon.spec import ModelSpec, Source, is_model_config, iter_layers, layer_name
from surgeon.io.legacy_door import keras3_order


def claims_h5(path: str) -> bool:
    """An HDF5 file (by its signature, whatever its name): Keras 3 and Keras 2 whole-model ``.h5``."""
    return not os.path.isdir(path) and read_head(path).startswith(HDF5_SIGNATURE)


def read_h5(path: str, *, values: bool = True) -> ModelSpec:
    try:
        handle = h5py.File(path, "r")
    except (OSError, RuntimeError):
        raise SurgeonError(f"'{path}' is a truncated or corrupt HDF5 file; save or download it again") from None
    with handle:
        try:
            return _read_open_file(handle, path, values)
        except (KeyError, OSError, ValueError, TypeError, AttributeError, IndexError, RuntimeError) as error:
            # h5py raises these for damaged datasets and groups deep inside the file (RuntimeError:
            # corrupt B-trees and heaps, found by fuzzing bytes: tests/test_fuzz.py).
            raise SurgeonError(f"'{path}' is damaged or incomplete ({type(error).__name__}: {error}); save it again") from None


def _read_open_file(handle: h5py.File, path: str, values: bool) -> ModelSpec:
    model_config = read_json_attr(handle, "model_config", path)
    if model_config is None:
        if "layer_names" in handle.attrs or "model_weights" not in handle:
            raise SurgeonError(
                f"'{path}' holds only weights (saved with save_weights), not a model; "
                "save the whole model with model.save('model.h5') or model.save('model.keras')"
            )
        raise SurgeonError(f"'{path}' has no model config; it is not a whole-model Keras file")
    keras_version = decode(handle.attrs.get("keras_version", "")) or None
    if keras_version is None and "model_weights" in handle:
        keras_version = decode(handle["model_weights"].attrs.get("keras_version", "")) or None
    training_config = read_json_attr(handle, "training_config", path)

    check_layer_entries(model_config)
    door = translate(model_config, training_config, keras_version)
    spec = ModelSpec(
        config=door.config,
        weights={},
        compile_config=from_training_config(door.training_config),
        optimizer_variables=_optimizer_variable_names(handle),
        source=Source(path=path, format="h5", keras_version=keras_version, dialect=door.dialect),
        notes=door.notes,
    )
    if "model_weights" not in handle:
        raise SurgeonError(f"'{path}' has a model config but no weights; save the model again with model.save")
    spec.weights = read_layer_weights(handle["model_weights"], spec.config, door.original_name, values)
    spec.weights = door.map_weights(spec.weights)
    check_spec(spec)
    return spec


def _optimizer_variable_names(handle: h5py.File) -> list[str] | None:
    if "optimizer_weights" not in handle:
        return None
    return read_name_list(handle["optimizer_weights"], "weight_names")


def read_layer_weights(group: h5py.Group, model_config: dict, original_name, values: bool) -> dict[str, dict]:
    """The weights of a ``model_weights`` group (or a ``save_weights`` file), one group per top-level layer."""
    weights: dict[str, dict] = {}
    for layer in model_config["config"]["layers"]:
        name = layer_name(layer)
        stored = original_name(name)
        if stored not in group:
            continue
        layer_group = group[stored]
        names = read_name_list(layer_group, "weight_names")
        if not names:
            continue
        owners = _owners(layer, name, original_name)
        for weight_name in names:
            owner, variable = _split_weight_name(weight_name, owners, name)
            weights.setdefault(owner, {})[variable] = read_dataset(layer_group[weight_name], values, "the file")
    return _keras3_order(weights, model_config)


def _owners(layer: dict, path: str, original_name) -> dict[str, str]:
    """Stored layer name -> layer path, for the layer itself and every layer nested in it."""
    owners = {original_name(layer_name(layer)): path}
    if is_model_config(layer):
        for inner_path, inner in iter_layers(layer, path + "/"):
            owners.setdefault(original_name(layer_name(inner)), inner_path)
    return owners


def _split_weight_name(weight_name: str, owners: dict[str, str], top: str) -> tuple[str, str]:
    """``"conv1/kernel:0"`` -> (``"base/conv1"``, ``"kernel"``), resolving names inside nested models.

    Variable paths may carry enclosing names (Keras 3 prefixes a nested Sequential's name, Keras 2
    the enclosing model's), and Keras 2 layer names may themselves contain "/": the innermost run
    of components that names a layer wins, the longest such run first.
    """
    parts = weight_name.split(":")[0].split("/")
    # First the longest run that ends at the variable: a Keras 2 layer name with "/" may end in
    # another layer's name (DenseNet's "conv1/bn" beside "bn", MobileNetV3's
    # "expanded_conv/squeeze_excite/Conv" beside "Conv").
    for start in range(len(parts) - 1):
        candidate = "/".join(parts[start:-1])
        if candidate in owners:
            return owners[candidate], parts[-1]
    for start in reversed(range(len(parts) - 1)):
        for stop in range(len(parts) - 1, start, -1):
            candidate = "/".join(parts[start:stop])
            if candidate in owners:
                return owners[candidate], "/".join(parts[stop:])
    if len(parts) == 1:
        return top, parts[0]
    raise SurgeonError(f"weight '{weight_name}' stored under layer '{top}' belongs to no layer of the model; the file is inconsistent")


def _keras3_order(weights: dict[str, dict], model_config: dict) -> dict[str, dict]:
    classes = {path: layer for path, layer in iter_layers(model_config)}
    return {path: keras3_order(classes.get(path, {}), stored) for path, stored in weights.items()}
