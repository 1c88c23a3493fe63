"""Layer classes a model file names beyond Keras' own: the user's registered layers and keras-hub's.

A ``.keras`` config names such a class by its module and its registered name
(``{"module": "my_layers", "class_name": "Scale", "registered_name": "my_pkg>Scale"}``); a legacy
``.h5`` config by the registered name alone (``"class_name": "my_pkg>Scale"``). Keras rebuilds
the layer only if the class is registered in the loading process, so surgeon checks that first
and names the module to import, instead of letting Keras fail deep inside deserialization.
``custom_layers`` is pure; ``check_classes_known`` asks Keras' registry.
"""

from __future__ import annotations

import dataclasses

from surgeon.errors import SurgeonError
from surgeon.spec import is_model_config, iter_layers

KERAS_HUB_PACKAGE = "keras_hub"
INSTALL_KERAS_HUB = "pip install 'surgeon[hub]'"


@dataclasses.dataclass(frozen=True)
class CustomLayer:
    path: str
    class_name: str  # the bare class name ("Scale")
    registered_name: str  # "package>Name", how Keras' registry knows it
    module: str | None  # where the class was defined when the file was saved (.keras only)

    @property
    def package(self) -> str:
        return self.registered_name.partition(">")[0] if ">" in self.registered_name else ""

    @property
    def from_keras_hub(self) -> bool:
        return self.package == KERAS_HUB_PACKAGE or (self.module or "").split(".")[0] == KERAS_HUB_PACKAGE

    @property
    def kind(self) -> str:
        return "keras-hub" if self.from_keras_hub else "custom"


def custom_layers(model_config: dict) -> list[CustomLayer]:
    """Every layer (nested ones included) whose class is not one of Keras' own.

    Example:
        >>> config = {"class_name": "Functional", "config": {"layers": [
        ...     {"class_name": "Scale", "module": "my_layers", "registered_name": "my_pkg>Scale", "config": {"name": "s"}}]}}
        >>> [(c.path, c.registered_name, c.kind) for c in custom_layers(config)]
        [('s', 'my_pkg>Scale', 'custom')]
    """
    found = []
    for path, layer in iter_layers(model_config):
        if is_model_config(layer):
            continue
        found.extend(_custom(path, layer))
    return found


def _custom(path: str, layer: dict) -> list[CustomLayer]:
    class_name = str(layer.get("class_name", ""))
    registered = layer.get("registered_name")
    module = layer.get("module")
    if not isinstance(registered, str) or not registered:
        registered = class_name if ">" in class_name else None
    if registered is None or (isinstance(module, str) and module.split(".")[0] == "keras"):
        return []
    return [CustomLayer(path, class_name.rpartition(">")[2], registered, module if isinstance(module, str) else None)]


def check_classes_known(model_config: dict) -> None:
    """SurgeonError naming the first class Keras' registry lacks, and how to register it.

    keras-hub's classes are registered by importing keras-hub, which is done here when the file
    names one; the user's are registered by their module (``--import``), or by an active
    ``keras.saving.custom_object_scope`` for library callers.
    """
    layers = custom_layers(model_config)
    if not layers:
        return
    import keras

    if any(layer.from_keras_hub for layer in layers):
        require_keras_hub()
    for layer in layers:
        if layer.from_keras_hub:
            if not keras_hub_class_exists(layer.registered_name, layer.module, layer.class_name):
                raise missing_keras_hub_class(layer.class_name, layer.path)
            continue
        if keras.saving.get_registered_object(layer.registered_name) is not None:
            continue
        where = f" (saved from module '{layer.module}')" if layer.module else ""
        module = layer.module or "MODULE"
        raise SurgeonError(
            f"layer '{layer.path}' is of class '{layer.class_name}', registered in package '{layer.package}'{where}, "
            f"which is not registered in this process; pass --import {module} (the module that registers it; "
            "library: import it, or use keras.saving.custom_object_scope)"
        )


def require_keras_hub():
    """keras_hub imported (its classes registered), or the one-line error naming the package to install."""
    try:
        import keras_hub
    except ImportError:
        raise SurgeonError(f"the model uses keras-hub classes, and keras-hub is not installed; {INSTALL_KERAS_HUB}") from None
    return keras_hub


def keras_hub_class_exists(registered_name: str | None, module: str | None, class_name: str) -> bool:
    """Whether the installed keras-hub has the class, by registered name or, for the classes it does
    not register (``DepthwiseConvBlock``), by the keras-hub module Keras itself would import it from.
    Only modules inside the keras_hub package are imported: installed library code, not the file's."""
    import importlib

    import keras

    if registered_name and keras.saving.get_registered_object(registered_name) is not None:
        return True
    if not module or module.split(".")[0] != KERAS_HUB_PACKAGE:
        return False
    try:
        return isinstance(getattr(importlib.import_module(module), class_name, None), type)
    except ImportError:
        return False


def missing_keras_hub_class(class_name: str, where: str) -> SurgeonError:
    import keras_hub

    return SurgeonError(
        f"'{where}' names keras-hub class '{class_name}', which keras-hub {keras_hub.__version__} does not have; "
        "install the keras-hub version that saved the file (its metadata.json says which)"
    )
