"""The door: every config dialect becomes the one Keras 3 functional form here, and only here.

Keras 2 configs are translated (the ``keras2`` package); Keras 3 configs that Keras 3 itself cannot load
back (application-only layers, positional node arguments) are rewritten (``keras3_fixups.py``);
Sequential models become Functional. Past this point nothing knows which dialect a file spoke.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Callable

from surgeon.errors import SurgeonError
from surgeon.io.compile_config import translate_training_config
from surgeon.io.keras2 import is_keras2, looks_like_keras2, translate_model_config
from surgeon.io.keras3_fixups import fix_keras3_config, fix_keras3_weights
from surgeon.io.sequential import convert_sequentials
from surgeon.spec import MODEL_CLASSES, is_model_config, iter_layers, layer_name, map_io_refs
from surgeon.weight_names import weight_names


@dataclasses.dataclass
class Door:
    config: dict
    training_config: dict | None
    dialect: str
    notes: list[str]
    renamed: dict[str, str]  # old name -> new name
    map_weights: Callable[[dict], dict]

    def original_name(self, name: str) -> str:
        return self._reverse.get(name, name)

    def __post_init__(self):
        self._reverse = {new: old for old, new in self.renamed.items()}


def translate(model_config, training_config: dict | None, keras_version: str | None) -> Door:
    notes: list[str] = []
    renamed: dict[str, str] = {}
    dialect = "keras3"
    if is_keras2(keras_version) or (keras_version is None and isinstance(model_config, dict) and looks_like_keras2(model_config)):
        # Lambda configs pass the door untouched: inspect shows them, and building a model
        # refuses them unless code is allowed (keras_model.check_code_layers).
        translation = translate_model_config(model_config)
        model_config, renamed, dialect = translation.config, dict(translation.renamed), "keras2"
        notes += [f"Keras {keras_version or '2'}: {note}" for note in translation.notes]
        if training_config:
            compile_notes: list[str] = []
            training_config = translate_training_config(training_config, compile_notes)
            notes += [f"Keras {keras_version or '2'}: {note}" for note in compile_notes]
    _check_model_config(model_config)
    model_config = copy.deepcopy(model_config)  # the one copy: the steps below edit in place
    _shift_io_refs(model_config, -1)
    convert_sequentials(model_config)

    model_config, fixups = fix_keras3_config(model_config)
    notes += [f"{fixup.layer}: {fixup.what}" for fixup in fixups]

    add_modules(model_config)

    def map_weights(weights: dict) -> dict:
        return _map_fixup_weights(fixups, weights, model_config)

    return Door(model_config, training_config, dialect, notes, renamed, map_weights)


def _check_model_config(model_config) -> None:
    if not isinstance(model_config, dict) or model_config.get("class_name") not in MODEL_CLASSES:
        found = model_config.get("class_name") if isinstance(model_config, dict) else type(model_config).__name__
        raise SurgeonError(
            f"the file's config describes a '{found}', not a Functional or Sequential model; "
            "subclassed models cannot be rewritten: rebuild the model functionally and save it again"
        )
    config = model_config.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise SurgeonError("the model config has no list of layers; the file is corrupt")
    for layer in config["layers"]:
        if not isinstance(layer, dict) or "class_name" not in layer or not isinstance(layer.get("config"), dict):
            raise SurgeonError("the model config holds a layer entry without class_name/config; the file is corrupt")


def _map_fixup_weights(fixups, weights: dict, model_config: dict) -> dict:
    """Move weights onto the layers that replaced unloadable ones (e.g. LayerScale's gamma)."""
    if not any(f.applied and f.weight_map for f in fixups):
        return weights
    mapped = fix_keras3_weights(fixups, {path: list(named.values()) for path, named in weights.items()})
    layers = dict(iter_layers(model_config))
    result = {}
    for path, arrays in mapped.items():
        layer = layers.get(path, {})
        names = weight_names(layer.get("class_name", ""), layer.get("config", {}), len(arrays))
        result[path] = dict(zip(names, arrays))
    return result


def add_modules(model: dict) -> None:
    """Give every layer entry the ``module`` key that Keras 3's deserializer resolves classes by.

    ``.h5`` files written by Keras 3 omit it on layers (``use_legacy_config``); ``.keras`` files
    carry it. One form past the door means one way to build the model.
    """
    if model.get("class_name") in MODEL_CLASSES:
        model.setdefault("module", "keras.src.models.functional")
        model.setdefault("registered_name", model["class_name"])
    for layer in model.get("config", {}).get("layers", []):
        if layer.get("class_name") in MODEL_CLASSES and "layers" in layer.get("config", {}):
            add_modules(layer)
        else:
            layer.setdefault("module", "keras.layers")
            layer.setdefault("registered_name", None)


# Keras 3 counts a nested Functional model's own creation node when a model's ``input_layers`` /
# ``output_layers`` name it (keras/src/models/functional.py, functional_from_config.get_tensor:
# "Functional models start out with a built-in node", node_index -= 1), but not in inbound nodes,
# and not for Sequential. The spec uses call indices everywhere; these two convert at the doors.
_COUNTS_CREATION_NODE = ("Functional", "Model")


def _shift_io_refs(model: dict, delta: int) -> None:
    config = model["config"]
    shifted = set()
    for layer in config["layers"]:
        if is_model_config(layer):
            _shift_io_refs(layer, delta)
            if layer.get("class_name") in _COUNTS_CREATION_NODE:
                shifted.add(layer_name(layer))

    def shift(leaf):
        if leaf[0] not in shifted or not isinstance(leaf[1], int):
            return leaf  # a non-integer index is reported by the consistency checks that follow
        return [leaf[0], leaf[1] + delta, leaf[2]]

    for key in ("input_layers", "output_layers"):
        if key in config:
            config[key] = map_io_refs(config[key], shift)


def to_keras_config(model_config: dict) -> dict:
    """The spec's config as Keras 3 expects to read it (a copy)."""
    keras_config = copy.deepcopy(model_config)
    _shift_io_refs(keras_config, +1)
    return keras_config
