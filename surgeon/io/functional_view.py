"""Functional subclasses (keras-hub backbones and tasks) described by their graph, not their arguments.

keras-hub's ``ResNetBackbone`` or ``ImageClassifier`` subclass ``keras.Model`` through the
functional API: ``__init__`` builds a graph of layers and hands its inputs and outputs to
``Functional``. Their ``get_config`` returns the constructor arguments, so a saved file says
"ResNetBackbone(stackwise_num_filters=...)", which only keras-hub can rebuild. Once built, the
same layers called on the same tensors form a plain ``Functional`` (``keras.Model(m.inputs,
m.outputs)``): that graph is what surgeon rewrites, and what it writes loads with plain Keras.
"""

from __future__ import annotations

from surgeon.spec import layer_name

# Keys of a layer entry that describe the layer itself; "name" and "inbound_nodes" describe its
# place in the enclosing graph and are kept.
_OWN_KEYS = ("module", "class_name", "config", "registered_name", "build_config")


def is_functional_subclass(layer) -> bool:
    """A model built through the functional API whose class is not ``Functional`` itself."""
    from keras.src.models.functional import Functional

    return isinstance(layer, Functional) and type(layer) is not Functional


def expandable(model) -> bool:
    """Whether ``model``'s graph survives Keras' config round trip layer by layer, so that it can
    be written as a plain functional model.

    Not every keras-hub layer does: keras-hub 0.32's ``DepthwiseConvBlock`` (MobileNetV3) appends
    "_0" to the name it is given, so rebuilt from its config it is no longer the layer the graph
    names. A model holding such a layer is kept whole (keras-hub rebuilds it from its arguments).
    """
    return unexpandable_layer(model) is None


def unexpandable_layer(model):
    """The first layer of ``model`` (not a built-in Keras layer) whose rebuilt copy has another name."""
    import keras

    for layer in model._flatten_layers(include_self=False, recursive=False):
        if isinstance(layer, keras.Model) or type(layer).__module__.split(".")[0] == "keras":
            continue
        try:
            copy = type(layer).from_config(layer.get_config())
        except Exception:
            return layer
        if copy.name != layer.name:
            return layer
    return None


def functional_config(model) -> dict:
    """The serialized model with every functional subclass in it (itself included) as its graph.

    Example:
        >>> backbone = keras_hub.models.ResNetBackbone(...)
        >>> functional_config(backbone)["class_name"]
        'Functional'
    """
    import keras

    source = graph_of(model) if is_functional_subclass(model) and expandable(model) else model
    config = keras.saving.serialize_keras_object(source)
    _expand_nested(config, model)
    return config


def graph_of(model):
    """A plain ``Functional`` over ``model``'s own layers and tensors (shared, not copied)."""
    import keras

    # The structures (a single tensor, not a list of one) keep the call signature of the model.
    inputs = getattr(model, "_inputs_struct", None)
    outputs = getattr(model, "_outputs_struct", None)
    inputs = model.inputs if inputs is None else inputs
    outputs = model.outputs if outputs is None else outputs
    return keras.Model(inputs, outputs, name=model.name, trainable=model.trainable)


def functional_subclasses(model, prefix: str = "") -> list[tuple[str, str]]:
    """(layer path, class name) of every functional subclass expanded in ``model``, itself as path ''."""
    found = [(prefix.rstrip("/"), type(model).__name__)] if is_functional_subclass(model) and expandable(model) else []
    if found or not is_functional_subclass(model):
        for layer in getattr(model, "layers", []):
            if hasattr(layer, "layers"):
                found += functional_subclasses(layer, prefix + layer.name + "/")
    return found


def kept_whole(model, prefix: str = "") -> list[tuple[str, str, str]]:
    """(layer path, class name, the layer that prevents expansion) of every functional subclass kept whole."""
    if is_functional_subclass(model) and not expandable(model):
        return [(prefix.rstrip("/"), type(model).__name__, unexpandable_layer(model).name)]
    found = []
    for layer in getattr(model, "layers", []):
        if hasattr(layer, "layers"):
            found += kept_whole(layer, prefix + layer.name + "/")
    return found


def _expand_nested(config: dict, model) -> None:
    import keras

    # Not every entry is one of ``model.layers``: a Sequential's InputLayer, and Keras ops called on
    # symbolic tensors (ResNetV2's ``ops.pad``, CSPNet's ``ops.split``), which a functional config
    # holds as operations beside the layers.
    layers = {layer.name: layer for layer in model.layers}
    for entry in config.get("config", {}).get("layers", []):
        live = layers.get(layer_name(entry))
        if not isinstance(live, keras.Model) or (is_functional_subclass(live) and not expandable(live)):
            continue
        inner = functional_config(live)
        for key in _OWN_KEYS:
            if key in inner:
                entry[key] = inner[key]
            else:
                entry.pop(key, None)
