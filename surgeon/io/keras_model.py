"""ModelSpec <-> in-memory ``keras.Model``, and loading a file with plain Keras.

TensorFlow is imported inside the functions only.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys

import numpy as np

from surgeon.errors import SurgeonError, one_line
from surgeon.io.dialects import to_keras_config, translate
from surgeon.spec import ModelSpec, Source, code_carriers, is_model_config, iter_layers


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


def build_keras_model(spec: ModelSpec, *, allow_code: bool = False, compile: bool = False):
    """A ``keras.Model`` with the spec's architecture and weights (compiled if asked and possible)."""
    check_code_layers(spec, allow_code)
    quiet_tensorflow()
    import keras

    try:
        # to_keras_config returns a copy: Functional.from_config pops keys out of its dict.
        model = keras.saving.deserialize_keras_object(to_keras_config(spec.config), safe_mode=not allow_code)
    except SurgeonError:
        raise
    except Exception as error:  # Keras raises TypeError/ValueError/AttributeError with long texts
        raise SurgeonError(_explain_build_failure(error)) from None
    set_weights(model, spec)
    if compile and spec.compile_config:
        compile_model(model, spec.compile_config)
    return model


def _explain_build_failure(error: Exception) -> str:
    text = one_line(error, limit=None)
    if "Unknown layer" in text or "Could not locate class" in text or "could not be deserialized" in text.lower():
        return (
            f"the model uses a layer class Keras does not know ({text[:200]}); "
            "register the class with keras.saving.register_keras_serializable or use built-in layers"
        )
    return f"Keras cannot rebuild the model from its config: {text[:300]}"


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


def _relative_name(layer, variable) -> str:
    prefix = layer.name + "/"
    return variable.path[len(prefix):] if variable.path.startswith(prefix) else variable.name


def spec_from_keras_model(model) -> ModelSpec:
    """Describe an in-memory functional or sequential ``keras.Model`` as a ModelSpec."""
    quiet_tensorflow()
    import keras

    if not isinstance(model, keras.Model):
        raise SurgeonError(f"expected a keras.Model, got {type(model).__name__}")
    config = keras.saving.serialize_keras_object(model)
    config.pop("compile_config", None)
    door = translate(config, None, keras.__version__)
    spec = ModelSpec(config=door.config, weights={}, source=Source(format="memory", keras_version=keras.__version__))
    for path, layer_config in iter_layers(spec.config):
        if is_model_config(layer_config):
            continue
        layer = keras_layer(model, path)
        if layer.weights:
            spec.weights[path] = {_relative_name(layer, v): np.asarray(v.numpy()) for v in layer.weights}
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
