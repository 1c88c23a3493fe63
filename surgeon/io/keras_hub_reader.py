"""Read keras-hub models: ``.keras`` files and preset directories holding backbones, tasks, or user
models that nest them.

A keras-hub backbone or task is saved as its constructor arguments, which only keras-hub can turn
back into layers. This reader lets the installed keras-hub do that (classes looked up by their
registered names, ``keras_hub>ResNetBackbone``; nothing stored in the file is run), then
describes the built model by its graph (``functional_view``), checks on seeded inputs that the
graph computes what the keras-hub model computes, and returns an ordinary ModelSpec. What
surgeon writes from it is a plain functional Keras model.

A task's preprocessor (resizing, scaling) is not part of its graph: ``predict`` and ``fit`` apply
it to the data first. It is reported, and with ``bake_preprocessing`` put in front of the graph
as built-in ``Resizing``/``Rescaling`` layers where that is exact.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import os

from surgeon.errors import SurgeonError
from surgeon.io.custom_classes import INSTALL_KERAS_HUB, keras_hub_class_exists, missing_keras_hub_class, require_keras_hub
from surgeon.spec import ModelSpec, is_model_config, iter_layers

PRESET_CONFIG = "config.json"
PRESET_WEIGHTS = "model.weights.h5"
TASK_CONFIG = "task.json"
TASK_WEIGHTS = "task.weights.h5"
# Outputs of the keras-hub model and of its graph must agree to this relative error (they run the
# same layers on the same tensors: any difference means the class computes more than its graph).
DOOR_RTOL = 1e-6
DOOR_SAMPLES = 2
DOOR_IMAGE_SIZE = 32  # for inputs of any size (None): the size the verification uses too
# Set by ``baking_preprocessing()`` (the CLI's --bake-preprocessing): every keras-hub task read
# inside the block gets its image preprocessing in front of its graph.
_BAKE_PREPROCESSING = contextvars.ContextVar("bake_preprocessing", default=False)


@contextlib.contextmanager
def baking_preprocessing(enabled: bool = True):
    """Within the block, keras-hub tasks are read with their image preprocessor baked in.

    Example:
        >>> with baking_preprocessing():
        ...     result = surgeon.prepare_file("classifier.keras", "ready.keras")
    """
    token = _BAKE_PREPROCESSING.set(enabled)
    try:
        yield
    finally:
        _BAKE_PREPROCESSING.reset(token)


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """What a task's image preprocessor does to each image before the model sees it."""

    image_size: tuple[int, int] | None
    scale: float | list[float] | None
    offset: float | list[float] | None
    interpolation: str
    crop_to_aspect_ratio: bool
    pad_to_aspect_ratio: bool
    antialias: bool

    def describe(self) -> str:
        size = f"resize to {self.image_size[0]}x{self.image_size[1]} ({self.interpolation}" + (
            ", crop to aspect ratio)" if self.crop_to_aspect_ratio else ", pad to aspect ratio)" if self.pad_to_aspect_ratio else ")"
        ) if self.image_size else "no resizing"
        return f"{size}, then x * scale + offset with scale={_short(self.scale)}, offset={_short(self.offset)}"


def _short(value) -> str:
    """6 significant digits: 1/255/0.229 reads 0.0171248, not 0.017124753831663668."""
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:.6g}" for v in value) + "]"
    return "None" if value is None else f"{value:.6g}"


# --- what the file holds ---------------------------------------------------------------------


def claims_keras_hub(path: str) -> bool:
    """A keras-hub preset directory, or a ``.keras`` archive whose config is or nests a keras-hub
    backbone or task (read from the archive's config.json alone; a damaged archive is left to the
    ``.keras`` reader, which says what is wrong with it)."""
    if os.path.isdir(path):
        return is_preset_dir(path)
    try:
        return holds_keras_hub_model(_config_of_archive(path))
    except Exception:  # not a zip, no config, not JSON: not ours
        return False


def is_preset_dir(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, PRESET_CONFIG))


def holds_keras_hub_model(config: dict) -> bool:
    """Whether a ``.keras`` config is, or nests, a keras-hub backbone or task (TensorFlow-free).

    keras-hub names every backbone ``...Backbone`` and gives every task a ``backbone`` argument;
    keras-hub *layers* (``FusedMBConvBlock``) inside a plain functional model need no reader of
    their own, only keras-hub imported (``custom_classes.check_classes_known``).
    """
    entries = [config] + [layer for _, layer in iter_layers(config)] if is_model_config(config) else [config]
    return any(_is_keras_hub_model_entry(entry) for entry in entries)


def _is_keras_hub_model_entry(entry: dict) -> bool:
    registered = str(entry.get("registered_name") or entry.get("class_name") or "")
    module = str(entry.get("module") or "")
    if not (registered.startswith("keras_hub>") or module.startswith("keras_hub")):
        return False
    arguments = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    return registered.endswith("Backbone") or "backbone" in arguments


# --- reading ----------------------------------------------------------------------------------


def read_keras_hub(path: str, *, values: bool = True, bake_preprocessing: bool | None = None) -> ModelSpec:
    """A ``.keras`` file or preset directory holding keras-hub models, as a ModelSpec of its graph.

    Example:
        >>> spec = read_keras_hub("resnet_preset/")
        >>> spec.config["class_name"], spec.source.format
        ('Functional', 'keras-hub preset')
    """
    from surgeon.io.functional_view import plain_view
    from surgeon.io.keras_model import no_stdout_noise, quiet_tensorflow, spec_from_keras_model

    if bake_preprocessing is None:
        bake_preprocessing = _BAKE_PREPROCESSING.get()
    quiet_tensorflow()
    keras_hub = require_keras_hub()
    with no_stdout_noise():
        model, preprocessor, kind = _load(path, keras_hub)
    preprocessing = image_preprocessing(preprocessor)
    if bake_preprocessing and preprocessing is None:
        raise SurgeonError(f"'{path}' has no image preprocessor to bake in; leave out --bake-preprocessing")
    # The model itself (not its view) goes to spec_from_keras_model, which takes its compile config.
    graph = _graph_with_preprocessing(model, preprocessing) if bake_preprocessing else model
    view = plain_view(graph)
    _check_graph_reproduces(model, view, preprocessor if bake_preprocessing else None, path)
    spec = spec_from_keras_model(graph)
    spec.source = dataclasses.replace(spec.source, path=path, format=kind)
    spec.notes = spec.notes + describe(model, preprocessing, bake_preprocessing, keras_hub.__version__) + what_stays(view, spec)
    spec.notes += flag_not_saved(model, _saved_config(path))
    return spec


def _load(path: str, keras_hub):
    """(model, its preprocessor or None, format name), built by the installed keras-hub."""
    if os.path.isdir(path):
        return _load_preset(path, keras_hub)
    import keras

    _check_classes_exist(_config_of_archive(path), path)
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except SurgeonError:
        raise
    except Exception as error:
        raise SurgeonError(f"keras-hub cannot rebuild the model in '{path}': {_one_line(error)}") from None
    return model, getattr(model, "preprocessor", None), "keras-hub .keras"


def _load_preset(path: str, keras_hub):
    import keras

    task_config = os.path.join(path, TASK_CONFIG)
    is_task = os.path.isfile(task_config)
    config_file = task_config if is_task else os.path.join(path, PRESET_CONFIG)
    for needed in (PRESET_WEIGHTS,) + ((TASK_WEIGHTS,) if is_task else ()):
        if not os.path.isfile(os.path.join(path, needed)):
            raise SurgeonError(
                f"the preset directory '{path}' has no {needed}; copy the whole preset (save_to_preset writes it)"
            )
    config = _read_json(config_file)
    _check_classes_exist(config, config_file)
    # What keras-hub's own preset loader does, without its guess of a task subclass from the
    # backbone's class (from_preset on the generic ImageClassifier would drop task.json).
    try:
        model = keras.saving.deserialize_keras_object(config)
        if is_task:
            model.load_task_weights(os.path.join(path, TASK_WEIGHTS))
            if hasattr(model.preprocessor, "load_preset_assets"):
                model.preprocessor.load_preset_assets(path)
        backbone = model.backbone if is_task else model
        backbone.load_weights(os.path.join(path, PRESET_WEIGHTS))
    except Exception as error:
        raise SurgeonError(f"keras-hub cannot load the preset '{path}': {_one_line(error)}") from None
    return model, getattr(model, "preprocessor", None), "keras-hub preset"


def _saved_config(path: str) -> dict:
    """The config the file or preset stores (the task's, when there is one)."""
    if os.path.isdir(path):
        task = os.path.join(path, TASK_CONFIG)
        return _read_json(task if os.path.isfile(task) else os.path.join(path, PRESET_CONFIG))
    return _config_of_archive(path)


def _config_of_archive(path: str) -> dict:
    import zipfile

    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read(PRESET_CONFIG))
    if not isinstance(config, dict):
        raise ValueError("config.json is not an object")
    return config


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
    except (OSError, ValueError) as error:
        raise SurgeonError(f"cannot read '{path}' ({_one_line(error)}); the preset is damaged, copy it again") from None
    if not isinstance(data, dict):
        raise SurgeonError(f"'{path}' is not a JSON object; the preset is damaged, copy it again")
    return data


def _check_classes_exist(config, where: str) -> None:
    """Every keras-hub class the config names is a class of the installed keras-hub."""
    for registered, module, class_name in sorted(_keras_hub_classes(config), key=str):
        if not keras_hub_class_exists(registered, module, class_name):
            raise missing_keras_hub_class(class_name, where)


def _keras_hub_classes(value) -> set[tuple]:
    """(registered name, module, class name) of every keras-hub object serialized in ``value``."""
    def text(item):
        return item if isinstance(item, str) else None

    return {(text(entry.get("registered_name")), text(entry.get("module")), str(entry.get("class_name")))
            for entry in _keras_hub_entries(value)}


def _keras_hub_entries(value) -> list[dict]:
    """Every serialized keras-hub object inside ``value``."""
    if isinstance(value, list):
        return [entry for item in value for entry in _keras_hub_entries(item)]
    if not isinstance(value, dict):
        return []
    registered, module = value.get("registered_name"), value.get("module")
    own = isinstance(registered, str) and registered.startswith("keras_hub>") or isinstance(module, str) and module.startswith("keras_hub")
    return ([value] if own else []) + [entry for item in value.values() for entry in _keras_hub_entries(item)]


# --- the task's preprocessing -----------------------------------------------------------------


def image_preprocessing(preprocessor) -> Preprocessing | None:
    """The image converter's steps, or None when there is no image preprocessor."""
    converter = getattr(preprocessor, "image_converter", None)
    if converter is None:
        return None
    size = converter.image_size
    return Preprocessing(
        image_size=tuple(int(d) for d in size) if size and None not in size else None,
        scale=_plain(converter.scale),
        offset=_plain(converter.offset),
        interpolation=str(converter.interpolation),
        crop_to_aspect_ratio=bool(converter.crop_to_aspect_ratio),
        pad_to_aspect_ratio=bool(converter.pad_to_aspect_ratio),
        antialias=bool(converter.antialias),
    )


def _plain(value):
    import numpy as np

    if value is None:
        return None
    array = np.asarray(value, dtype=float)
    return float(array) if array.ndim == 0 else [float(v) for v in array.ravel()]


def _graph_with_preprocessing(model, preprocessing: Preprocessing):
    """``model`` behind built-in Resizing and Rescaling layers doing what its image converter does."""
    import keras

    from surgeon.io.functional_view import plain_view

    body = plain_view(model)
    channels = model.inputs[0].shape[-1]
    images = keras.Input(shape=(None, None, channels), name="images")
    x = images
    if preprocessing.image_size:
        x = keras.layers.Resizing(*preprocessing.image_size, interpolation=preprocessing.interpolation,
                                  crop_to_aspect_ratio=preprocessing.crop_to_aspect_ratio,
                                  pad_to_aspect_ratio=preprocessing.pad_to_aspect_ratio,
                                  antialias=preprocessing.antialias, name="preprocessing_resizing")(x)
    if preprocessing.scale is not None or preprocessing.offset is not None:
        x = keras.layers.Rescaling(scale=1.0 if preprocessing.scale is None else preprocessing.scale,
                                   offset=0.0 if preprocessing.offset is None else preprocessing.offset,
                                   name="preprocessing_rescaling")(x)
    return keras.Model(images, body(x), name=model.name)


# --- the door check ---------------------------------------------------------------------------


def _check_graph_reproduces(model, graph, preprocessor, path: str) -> None:
    """The graph surgeon will rewrite computes what the keras-hub model computes (``task(x)``, or
    ``task(preprocessor(x))`` with the preprocessing baked in), on seeded images.

    Both run the same layer objects, so anything but a tiny difference means the class computes
    more than its graph (an overridden ``call``), which a rewrite of the graph would drop, or that
    a keras-hub layer does more than the graph its call traced.
    """
    import numpy as np

    shape = [DOOR_SAMPLES] + [DOOR_IMAGE_SIZE if d is None else int(d) for d in graph.inputs[0].shape[1:]]
    images = np.random.default_rng(0).uniform(-1.0, 1.0, shape).astype("float32")
    if preprocessor is not None:
        images = (images + 1.0) * 127.5  # pixel values, as an image preprocessor expects
        expected = model(np.asarray(preprocessor.image_converter(images)), training=False)
    else:
        expected = model(images, training=False)
    got = graph(images, training=False)
    worst = 0.0
    for want, have in zip(_flat(expected), _flat(got)):
        want, have = np.asarray(want, np.float64), np.asarray(have, np.float64)
        scale = float(np.abs(want).max()) or 1.0
        worst = max(worst, float(np.abs(want - have).max()) / scale if want.shape == have.shape else float("inf"))
    if not worst <= DOOR_RTOL:
        raise SurgeonError(
            f"the functional graph of {type(model).__name__} in '{path}' does not compute what the model computes "
            f"(relative error {worst:.2g}): the class adds work outside its graph, which surgeon cannot rewrite"
        )


def _flat(outputs) -> list:
    if isinstance(outputs, dict):
        return list(outputs.values())
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


# --- what the report says ---------------------------------------------------------------------


def describe(model, preprocessing: Preprocessing | None, baked: bool, version: str) -> list[str]:
    from surgeon.io.functional_view import functional_subclasses, traced_classes

    notes = []
    expanded = functional_subclasses(model)
    if expanded:
        shown = ", ".join(f"{name} '{path or model.name}'" for path, name in expanded)
        notes.append(f"keras-hub {version}: {shown} read as functional graph(s); the output is a plain functional model")
    traced = traced_classes(model)
    if traced:
        notes.append(
            f"keras-hub layers {', '.join(traced)} written as the graphs of the layers they own: loaded from a file, "
            "a frozen one would train every layer inside it (keras-hub does not pass its flag on); now each layer "
            "carries its own flag, and the BatchNormalizations inside fold and freeze like any other"
        )
    if preprocessing is not None:
        if baked:
            notes.append(f"preprocessing baked in as Resizing/Rescaling layers: {preprocessing.describe()}")
        else:
            notes.append(
                f"the task's preprocessor is not part of the model: predict()/fit() applied {preprocessing.describe()}; "
                "apply it in your input pipeline, or pass --bake-preprocessing"
            )
    return notes


def what_stays(model, spec: ModelSpec) -> list[str]:
    """Notes on what is still keras-hub in the graph: models kept whole, layers, the BNs inside them."""
    import keras

    from surgeon.io.custom_classes import custom_layers
    from surgeon.io.functional_view import kept_whole

    notes = [
        f"{name} '{path}' kept as one keras-hub layer: its layer '{culprit}' does not rebuild from its own config "
        "under the same name, so its graph cannot be written as plain Keras"
        for path, name, culprit in kept_whole(model)
    ]
    hub = [layer for layer in custom_layers(spec.config) if layer.from_keras_hub]
    if not hub:
        if not custom_layers(spec.config):
            notes.append("every layer is a built-in Keras layer: the output loads and fine-tunes without keras-hub")
        return notes
    classes = sorted({layer.class_name for layer in hub})
    notes.append(f"{len(hub)} layer(s) stay keras-hub classes ({', '.join(classes)}): loading the output needs keras-hub")
    inside = []
    for layer in hub:
        live = model
        for name in layer.path.split("/"):
            live = live.get_layer(name)
        count = sum(isinstance(sub, keras.layers.BatchNormalization) for sub in live._flatten_layers(include_self=False))
        if count:
            inside.append((layer.path, count))
            spec.inner_batch_norms[layer.path] = count
    if inside:
        total = sum(count for _, count in inside)
        notes.append(
            f"{total} BatchNormalization layer(s) inside {len(inside)} keras-hub layer(s) left as they are (e.g. "
            f"'{inside[0][0]}'): surgeon rewrites a layer it does not know as one unit, and cannot fold or freeze inside it"
        )
    return notes


def flag_not_saved(model, config: dict) -> list[str]:
    """Notes on keras-hub backbones whose saved config has no ``trainable``.

    keras-hub 0.32's ``VGGBackbone.get_config`` does not chain to ``Backbone.get_config``, so a
    frozen VGG backbone is saved without its flag and loads trainable (by keras-hub too); surgeon
    keeps the flags as loaded, and says so, since the user most likely froze it on purpose.
    """
    flagless = {str(entry.get("class_name")) for entry in _keras_hub_entries(config)
                if str(entry.get("class_name", "")).endswith("Backbone") and "trainable" not in (entry.get("config") or {})}
    return [
        f"{type(layer).__name__} '{layer.name}' was saved without its trainable flag (keras-hub's get_config leaves it "
        f"out), so it loads trainable whatever it was when saved; if you had frozen it, pass --freeze {layer.name}"
        for layer in model._flatten_layers(include_self=True) if type(layer).__name__ in flagless
    ]


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())[:300]


__all__ = ["claims_keras_hub", "read_keras_hub", "baking_preprocessing", "is_preset_dir", "holds_keras_hub_model", "image_preprocessing", "INSTALL_KERAS_HUB"]
