"""ModelSpec <-> in-memory ``keras.Model``, and loading a file with plain Keras.

TensorFlow is imported inside the functions only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import importlib
import os
import sys

import numpy as np

from surgeon.errors import SurgeonError, one_line
from surgeon.io.custom_classes import check_classes_known, custom_layers
from surgeon.io.dialects import to_keras_config, translate
from surgeon.io.object_paths import is_object_path_form, layer_assets, load_layer_assets, load_object_path_weights
from surgeon.spec import ModelSpec, Source, code_carriers, is_keras_op, is_model_config, iter_layers


def quiet_tensorflow() -> None:
    """Import TensorFlow (once) without its C++ start-up chatter on the user's terminal.

    TensorFlow 2.21 logs oneDNN/CUDA notices through absl before it reads TF_CPP_MIN_LOG_LEVEL,
    so the only way to keep stderr clean for our one-line errors is to point file descriptor 2
    at /dev/null for the duration of the import. An import error is re-raised after restoring it.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if "tensorflow" in sys.modules or os.environ.get("SURGEON_DEBUG"):
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            importlib.import_module("keras")  # imports tensorflow, the noisy part
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    if _own_process:
        gc.freeze()


# Set by the command-line entry points, whose process surgeon owns (``own_process``).
_own_process = False


def own_process() -> None:
    """Say this process is surgeon's own (the command line), not a library caller's.

    Then the ~1M objects TensorFlow's import leaves are moved out of the cyclic garbage
    collector's sight once it is imported (``gc.freeze``): the collections that building Keras
    models triggers stopped rescanning them, 1-1.5 s of a 7-9 s ResNet50 fold-bn. They live as
    long as the process anyway. A library caller's process and its collector are left alone.
    """
    global _own_process
    _own_process = True


def check_code_layers(spec: ModelSpec, allow_code: bool) -> None:
    """Refuse a model whose config holds code Keras would run (Lambda layers, lambdas elsewhere)."""
    if allow_code:
        return
    carriers = code_carriers(spec.config)
    if carriers:
        raise SurgeonError(
            f"layer '{carriers[0]}' holds Python code stored in the file, which loading would run; "
            "pass --allow-code (library: allow_code=True) only if you trust the file"
        )


def load_plain(path: str, *, allow_code: bool = False):
    """Load a file exactly as a user would: ``keras.models.load_model`` with no help from surgeon."""
    quiet_tensorflow()
    import keras

    with no_stdout_noise():
        return keras.models.load_model(path, safe_mode=not allow_code)


def build_keras_model(spec: ModelSpec, *, allow_code: bool = False, compile: bool = False, never_saved: bool = False):
    """A ``keras.Model`` with the spec's architecture and weights (compiled if asked and possible).

    ``never_saved``: the model only computes (a verification reference) and its config is never
    written, so layers whose weights all come from the spec skip their random initializers
    (``start_from_zeros``).
    """
    check_code_layers(spec, allow_code)
    quiet_tensorflow()
    check_classes_known(spec.config)
    import keras

    # to_keras_config returns a copy: Functional.from_config pops keys out of its dict.
    config = to_keras_config(spec.config)
    if never_saved:
        start_from_zeros(config, spec.weights)
    try:
        model = keras.saving.deserialize_keras_object(config, safe_mode=not allow_code)
    except SurgeonError:
        raise
    except Exception as error:  # Keras raises TypeError/ValueError/AttributeError with long texts
        raise SurgeonError(_explain_build_failure(error)) from None
    set_weights(model, spec)
    check_custom_weights_read(model, spec)
    for path, files in spec.assets.items():
        load_layer_assets(keras_layer(model, path), files)
    if compile and spec.compile_config:
        compile_model(model, spec.compile_config)
    return model


def start_from_zeros(config: dict, weights: dict) -> None:
    """Make every ``*_initializer`` of a built-in layer with weights in ``weights`` "zeros", in place.

    Random initializers cost 0.4 s of ResNet50's 1.3 s build (glorot_uniform over 25M values) and
    are wasted on a layer whose every weight ``set_weights`` then assigns (it checks their count
    and shapes). Layers of other classes keep theirs: their keys may mean something else.

    Example:
        >>> config = {"class_name": "Functional", "config": {"layers": [
        ...     {"class_name": "Dense", "config": {"name": "d", "kernel_initializer": "glorot_uniform", "bias_initializer": None}},
        ...     {"class_name": "Dense", "config": {"name": "e", "kernel_initializer": "ones"}}]}}
        >>> start_from_zeros(config, {"d": {}})
        >>> [layer["config"].get("kernel_initializer") for layer in config["config"]["layers"]]
        ['zeros', 'ones']
    """
    custom = {layer.path for layer in custom_layers(config)}
    for path, layer in iter_layers(config):
        if path in weights and path not in custom and not is_model_config(layer):
            layer["config"] = _zero_initializers(layer["config"])


def _zero_initializers(value):
    if isinstance(value, dict):
        return {key: "zeros" if key.endswith("_initializer") and item is not None else _zero_initializers(item)
                for key, item in value.items()}
    if isinstance(value, list):
        return [_zero_initializers(item) for item in value]
    return value


def check_custom_weights_read(model, spec: ModelSpec) -> None:
    """Layers of classes beyond Keras' own whose weights the file reader could not place get them
    from the file loaded by Keras itself (the classes are registered by now).

    A ``.keras`` file stores the weights of a layer's inner layers (``self.dense = Dense(...)``,
    keras-hub's ``FusedMBConvBlock``) under the names of the attributes holding them, which only
    the class knows; surgeon's reader leaves them out, and Keras' loader puts them back. Without
    this the layer would keep freshly initialised weights.
    """
    missing = [layer for layer in custom_layers(spec.config)
               if layer.path not in spec.weights and keras_layer(model, layer.path).weights]
    if not missing:
        return
    if not spec.source.path or spec.source.format != "keras":
        raise SurgeonError(
            f"layer '{missing[0].path}' ({missing[0].class_name}) holds weights in inner layers that were not read; "
            "save the model as .keras or .h5 and run surgeon on the file"
        )
    loaded = load_plain(spec.source.path)
    for layer in missing:
        try:
            keras_layer(model, layer.path).set_weights(keras_layer(loaded, layer.path).get_weights())
        except ValueError as error:
            raise SurgeonError(f"cannot restore the weights of layer '{layer.path}' ({layer.class_name}): {error}") from None


def _explain_build_failure(error: Exception) -> str:
    text = one_line(error, limit=None)
    if "Unknown layer" in text or "Could not locate class" in text or "could not be deserialized" in text.lower():
        return (
            f"the model uses a layer class Keras does not know ({one_line(text, 200)}); "
            "register the class with keras.saving.register_keras_serializable or use built-in layers"
        )
    return f"Keras cannot rebuild the model from its config: {one_line(text, 300)}"


def compile_model(model, compile_config: dict) -> None:
    """Compile with the stored loss/metrics and a *fresh* optimizer of the stored config."""
    try:
        model.compile_from_config(compile_config)
    except Exception as error:
        raise SurgeonError(f"cannot compile the model from its stored compile config: {one_line(error)}") from None


def keras_layer(model, path: str):
    layer = model
    for name in path.split("/"):
        layer = layer.get_layer(name)
    return layer


def set_weights(model, spec: ModelSpec) -> None:
    for path, named in spec.weights.items():
        try:
            layer = keras_layer(model, path)
        except ValueError:
            raise SurgeonError(f"the file has weights for '{path}', which is not a layer of the model; the file is inconsistent") from None
        if is_object_path_form(named):
            load_object_path_weights(layer, named, path)
            continue
        expected = [_relative_name(layer, variable) for variable in layer.weights]
        if set(expected) == set(named):
            values = [named[name] for name in expected]
        else:
            values = list(named.values())
        if len(values) != len(layer.weights):
            raise SurgeonError(
                f"layer '{path}' expects {len(layer.weights)} weights, the file has {len(values)}; the file is inconsistent"
            )
        for variable, value in zip(layer.weights, values):
            if tuple(variable.shape) != tuple(np.shape(value)):
                raise SurgeonError(
                    f"weight '{path}/{_relative_name(layer, variable)}' has shape {tuple(np.shape(value))} in the file "
                    f"but the layer expects {tuple(variable.shape)}; the file is inconsistent"
                )
        layer.set_weights(values)
        if hasattr(layer, "finalize_state"):
            # What both Keras loaders do after assigning a layer's variables: an adapted
            # Normalization or Discretization derives its working state from them
            # (keras/src/legacy/saving/legacy_h5_format.py, Normalization.load_own_variables).
            layer.finalize_state()


def owns_layers(named: dict) -> bool:
    """Weights of a layer that owns layers: ``.keras`` object paths or ``cell/kernel``-style names."""
    return is_object_path_form(named) or any("/" in name for name in named)


def name_owned_layer_weights(spec: ModelSpec, *, allow_code: bool = False) -> ModelSpec:
    """``spec`` with the weights of layers that own layers named and ordered as the legacy ``.h5`` needs.

    The legacy ``.h5`` layout lists each layer's variables by name in
    ``trainable_weights + non_trainable_weights`` order, which Keras' loader matches by position;
    for a layer that owns layers that order depends on the owned layers and on the layer's flag
    (frozen: ``layer.weights`` order), which only the built layer knows: it is built once and asked.
    ``.keras`` object paths become Keras' variable names on the way.
    """
    paths = [path for path, named in spec.weights.items() if owns_layers(named)]
    if not paths:
        return spec
    model = build_keras_model(spec, allow_code=allow_code, never_saved=True)
    weights = dict(spec.weights)
    for path in paths:
        layer = keras_layer(model, path)
        variables = layer.trainable_weights + layer.non_trainable_weights
        names = [_relative_name(layer, variable) for variable in variables]
        if len(set(names)) != len(names):  # two owned layers of one name: keep them apart by position
            names = [f"{index}/{name}" for index, name in enumerate(names)]
        weights[path] = {name: np.asarray(variable.numpy()) for name, variable in zip(names, variables)}
    return dataclasses.replace(spec, weights=weights)


def _relative_name(layer, variable) -> str:
    # A variable an owned layer created outside its owner's name scope keeps its own path
    # (SpectralNormalization's "dense_4/kernel" beside its "spectral_normalization/vector_u").
    # A Sequential built with an Input scopes its layers' variables under its own name
    # ("seq/bn1/gamma"), so the layer's name is looked for as a path segment, not only a prefix.
    path = "/" + variable.path
    start = path.find("/" + layer.name + "/")
    return path[start + len(layer.name) + 2:] if start >= 0 else variable.path


def _named_values(layer) -> dict[str, np.ndarray]:
    """``layer.weights`` by name, in order. A layer with inner layers (a keras-hub backbone kept
    whole) can hold several variables of one name ("kernel"): they are then keyed by position too,
    and ``set_weights`` puts them back by position."""
    names = [_relative_name(layer, v) for v in layer.weights]
    if len(set(names)) < len(names):
        names = [f"{index}:{name}" for index, name in enumerate(names)]
    return {name: np.asarray(v.numpy()) for name, v in zip(names, layer.weights)}


def spec_from_keras_model(model) -> ModelSpec:
    """Describe an in-memory functional or sequential ``keras.Model`` as a ModelSpec."""
    quiet_tensorflow()
    import keras

    from surgeon.io.functional_view import plain_view

    if not isinstance(model, keras.Model):
        raise SurgeonError(f"expected a keras.Model, got {type(model).__name__}")
    # Functional subclasses (keras-hub backbones and tasks, here or nested) and the keras-hub
    # layers that trace as their graphs, over the same layer objects.
    view = plain_view(model)
    config = keras.saving.serialize_keras_object(view)
    config.pop("compile_config", None)
    # Keras ops called on symbolic tensors are not among the layers, and the door may turn them
    # into layers of the same name (keras3_fixups): neither has weights to read.
    operations = {path for path, entry in iter_layers(config) if is_keras_op(entry)}
    door = translate(config, None, keras.__version__)
    spec = ModelSpec(config=door.config, weights={}, source=Source(format="memory", keras_version=keras.__version__))
    for path, layer_config in iter_layers(spec.config):
        # A Sequential model's InputLayer is not among its layers (get_layer cannot find it).
        if is_model_config(layer_config) or layer_config.get("class_name") == "InputLayer" or path in operations:
            continue
        layer = keras_layer(view, path)
        if layer.weights:
            spec.weights[path] = _named_values(layer)
        assets = layer_assets(layer)
        if assets:
            spec.assets[path] = assets
    spec.weights = door.map_weights(spec.weights)
    spec.notes = door.notes
    if getattr(model, "compiled", False):
        spec.compile_config = model.get_compile_config() or None
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and getattr(optimizer, "built", False):
            spec.optimizer_variables = [v.path for v in optimizer.variables]
    return spec


@contextlib.contextmanager
def no_stdout_noise():
    """Keras prints progress and warnings on stdout/stderr during save/load; keep JSON output clean."""
    import logging
    import warnings

    previous = logging.getLogger("absl").level
    logging.getLogger("absl").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            logging.getLogger("absl").setLevel(previous)
