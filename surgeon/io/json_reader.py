"""Read an architecture JSON (``model.to_json()``) with its weights-only file (``save_weights``).

The pattern of the 2017-era transfer-learning tutorials: ``open("model.json", "w").write(
model.to_json())`` then ``model.save_weights("model.h5")``. The weights file is given explicitly
(``--weights W.h5``, library ``weights=``) or found beside the JSON under the same stem:
``model.h5``, ``model.weights.h5``, ``model_weights.h5``, ``model.hdf5``. Either layout of weights
is read: the legacy one (root attribute ``layer_names``, one group per layer, as in a whole-model
``.h5``'s ``model_weights``) and tf.keras 2.13+'s ``.weights.h5`` (class-name paths,
``tracking_paths``); a whole-model ``.h5`` works too (its ``model_weights`` group).
"""

from __future__ import annotations

import json
import os

from surgeon.errors import SurgeonError
from surgeon.io.legacy_door import read_keras2_parts, weights_for_spec
from surgeon.io.h5_reader import read_layer_weights
from surgeon.io.hdf5 import read_name_list
from surgeon.io.tf_keras_archive import open_weights
from surgeon.io.tracking_paths import read_tracked_weights

WEIGHT_SUFFIXES = (".h5", ".weights.h5", "_weights.h5", ".hdf5")

_paired: dict[str, str] = {}  # realpath of a JSON -> its weights file, set by pair_weights


def claims_json(path: str) -> bool:
    """A file named ``.json``: an architecture saved with ``model.to_json()`` (checked when read)."""
    return not os.path.isdir(path) and os.path.splitext(path)[1].lower() == ".json"


def pair_weights(json_path: str, weights_path: str | None) -> None:
    """Say where the weights of ``json_path`` are, for every later read of it in this process
    (the CLI's ``--weights``). ``None`` leaves the same-stem search in place.

    Example:
        >>> pair_weights("model.json", "checkpoints/best_weights.h5")
    """
    if weights_path is not None:
        _paired[os.path.realpath(json_path)] = str(weights_path)


def weights_for(json_path: str) -> str:
    """The weights file that goes with ``json_path``: the paired one, else one sharing its stem."""
    paired = _paired.get(os.path.realpath(json_path))
    if paired is not None:
        if not os.path.isfile(paired):
            raise SurgeonError(f"no such weights file: '{paired}'; check the path given with --weights")
        return paired
    stem = os.path.splitext(json_path)[0]
    for suffix in WEIGHT_SUFFIXES:
        if os.path.isfile(stem + suffix):
            return stem + suffix
    names = ", ".join(os.path.basename(stem) + suffix for suffix in WEIGHT_SUFFIXES)
    raise SurgeonError(f"'{json_path}' is an architecture without weights; give them with --weights W.h5 "
                       f"(or put them beside it as one of {names})")


def read_json_model(path: str, *, values: bool = True):
    try:
        with open(path, "rb") as handle:
            model_config = json.loads(handle.read())
    except OSError as error:
        raise SurgeonError(f"cannot read '{path}': {error.strerror}") from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        raise SurgeonError(f"'{path}' is not valid JSON; surgeon reads a model architecture saved with model.to_json()") from None
    if not isinstance(model_config, dict) or "class_name" not in model_config or "config" not in model_config:
        raise SurgeonError(f"'{path}' is JSON but not a Keras model architecture (no class_name/config); "
                           "save one with model.to_json()")
    version = model_config.pop("keras_version", None)
    model_config.pop("backend", None)
    weights_path = weights_for(path)
    with open_weights(weights_path, weights_path) as handle:
        return read_keras2_parts(
            model_config, None, version if isinstance(version, str) else None, path, "json",
            lambda door: _read_weights(handle, door, model_config, values, weights_path),
            weights_path=weights_path,
        )


def _read_weights(handle, door, original_config: dict, values: bool, weights_path: str) -> dict[str, dict]:
    group = handle["model_weights"] if "model_weights" in handle else handle
    if "layer_names" in group.attrs:
        layers = original_config["config"] if isinstance(original_config["config"], list) else original_config["config"].get("layers", [])
        wanted = {layer.get("name") or layer.get("config", {}).get("name") for layer in layers if isinstance(layer, dict)}
        foreign = sorted(name for name in group if name not in wanted and len(read_name_list(group[name], "weight_names")))
        if foreign:
            raise SurgeonError(f"'{weights_path}' holds weights for layer(s) {', '.join(foreign[:5])} that the architecture "
                               "does not have; these weights belong to another model")
        return door.map_weights(read_layer_weights(group, door.config, door.original_name, values))
    if "layers" in handle:
        return weights_for_spec(door, read_tracked_weights(handle, original_config, values, f"'{weights_path}'"))
    raise SurgeonError(f"'{weights_path}' holds no Keras weights (neither layer_names nor layers); "
                       "save them with model.save_weights")
