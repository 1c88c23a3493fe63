"""From the parts of a Keras 2 file (model config, training config, weights by original layer
name) to a ModelSpec: one path through the door for every Keras 2 reader but ``.h5``.

SavedModel directories, tf.keras ``.keras`` archives and JSON + weights pairs differ only in where
they keep the config and how they name the weights; each reader finds its layer's variables under
the layer's *original* name path (``("block1/conv",)``, ``("base", "bn1")``) with Keras 2 variable
names (``depthwise_kernel``). Here the config is translated (``dialects.translate``) and each
layer's weights are handed to the translated layer (renamed ``/`` -> ``_``, Keras 3 weight names).
"""

from __future__ import annotations

from typing import Callable

from surgeon.errors import SurgeonError
from surgeon.io.compile_config import from_training_config
from surgeon.io.dialects import Door, translate
from surgeon.io.consistency import check_layer_entries, check_spec
from surgeon.weight_names import weight_names
from surgeon.spec import ModelSpec, Source, iter_layers

OriginalPath = tuple[str, ...]


def read_keras2_parts(model_config, training_config, keras_version: str | None, path: str, file_format: str,
                      read_weights: Callable[[Door], dict[str, dict]],
                      optimizer_variables: list[str] | None = None, weights_path: str | None = None) -> ModelSpec:
    """Translate ``model_config`` at the door and attach the weights ``read_weights(door)`` returns
    (layer path -> named arrays, e.g. through :func:`weights_for_spec`)."""
    if isinstance(model_config, dict):
        check_layer_entries(model_config)
    try:
        door = translate(model_config, training_config if isinstance(training_config, dict) else None, keras_version)
    except (KeyError, ValueError, TypeError, AttributeError, IndexError) as error:
        # A malformed config trips the translation somewhere deep inside; the file is at fault.
        raise SurgeonError(f"the model config in '{path}' is malformed ({type(error).__name__}: {error}); the file is corrupt") from None
    spec = ModelSpec(
        config=door.config,
        weights={},
        compile_config=from_training_config(door.training_config),
        optimizer_variables=optimizer_variables,
        source=Source(path=path, format=file_format, keras_version=keras_version, dialect=door.dialect, weights_path=weights_path),
        notes=door.notes,
    )
    spec.weights = read_weights(door)
    check_spec(spec)
    return spec


def weights_for_spec(door: Door, stored: dict[OriginalPath, dict]) -> dict[str, dict]:
    """``{("base", "bn1"): {"gamma": ..}}`` -> ``{"base/bn1": {"gamma": ..}}`` in Keras 3 order."""
    layers = dict(iter_layers(door.config))
    weights: dict[str, dict] = {}
    for original, variables in stored.items():
        if not variables:
            continue
        path = "/".join(door.renamed.get(name, name) for name in original)
        weights[path] = keras3_order(layers.get(path, {}), variables)
    return door.map_weights(weights)


def keras3_order(layer: dict, stored: dict) -> dict:
    """Name and order a layer's weights as Keras 3 does, where the class is known.

    Keras 2 stored some weights under other names (DepthwiseConv2D's ``depthwise_kernel`` is
    Keras 3's ``kernel``) in the same order, so a known class with the right count is renamed by
    position; passes then see one naming.

    Example:
        >>> keras3_order({"class_name": "DepthwiseConv2D", "config": {}}, {"depthwise_kernel": 1, "bias": 2})
        {'kernel': 1, 'bias': 2}
    """
    names = weight_names(layer.get("class_name", ""), layer.get("config", {}), len(stored))
    if set(names) == set(stored):
        return {name: stored[name] for name in names}
    if not names[0].isdigit():
        return dict(zip(names, stored.values()))
    return stored
