"""Functional subclasses (keras-hub backbones and tasks) described by their graph, not their arguments.

keras-hub's ``ResNetBackbone`` or ``ImageClassifier`` subclass ``keras.Model`` through the
functional API: ``__init__`` builds a graph of layers and hands its inputs and outputs to
``Functional``. Their ``get_config`` returns the constructor arguments, so a saved file says
"ResNetBackbone(stackwise_num_filters=...)", which only keras-hub can rebuild. Once built, the
same layers called on the same tensors form a plain ``Functional`` (``keras.Model(m.inputs,
m.outputs)``): that graph is what surgeon rewrites, and what it writes loads with plain Keras.

keras-hub's blocks (EfficientNetV2's ``FusedMBConvBlock``) are layers, not models, but their
``call`` too is a graph of layers they own: ``traced_graph`` writes it down, so that no frozen
block trains after loading and every BatchNormalization inside is reachable. ``plain_view``
puts both together: the model as plain Keras, over the same layer objects.
"""

from __future__ import annotations

import weakref


def is_functional_subclass(layer) -> bool:
    """A model built through the functional API whose class is not ``Functional`` itself."""
    from keras.src.models.functional import Functional

    return isinstance(layer, Functional) and type(layer) is not Functional


def expandable(model) -> bool:
    """Whether ``model``'s graph survives Keras' config round trip layer by layer, so that it can
    be written as a plain functional model.

    Not every keras-hub layer does: keras-hub 0.32's ``DepthwiseConvBlock`` (MobileNetV3) appends
    "_0" to the name it is given, so rebuilt from its config it is no longer the layer the graph
    names. Such a layer is written as the graph its call traces (``traced_graph``) where it can
    be; a model holding one that cannot is kept whole (keras-hub rebuilds it from its arguments).
    """
    return unexpandable_layer(model) is None


def unexpandable_layer(model):
    """The first layer of ``model`` (not a built-in Keras layer, not traced) whose rebuilt copy has another name."""
    import keras

    for layer in model._flatten_layers(include_self=False, recursive=False):
        if isinstance(layer, keras.Model) or type(layer).__module__.split(".")[0] == "keras" or traced_graph(layer):
            continue
        try:
            copy = type(layer).from_config(layer.get_config())
        except Exception:
            return layer
        if copy.name != layer.name:
            return layer
    return None


# keras-hub layer -> the Functional its call traces (None: it cannot be traced). Weak keys: a
# model that is gone takes its traces with it.
_TRACES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def traced_graph(layer):
    """The graph a keras-hub layer's ``call`` builds from the layers it owns, as a plain
    Functional named like the layer, or None where that graph is not the whole layer.

    Why: keras-hub blocks (EfficientNetV2's ``FusedMBConvBlock``, MobileNetV3's
    ``InvertedResidualBlock``) create their Conv2D and BatchNormalization layers in ``__init__``
    without passing their own ``trainable`` on, so a frozen block loaded from any file trains
    every layer inside it (Keras 3 trains each variable whose own flag is True), and a
    BatchNormalization inside it cannot be folded or frozen. As the graph of its own layers,
    each of them carries its own flag and every rewrite reaches it.

    Traced only when that is the whole layer: a keras-hub layer that owns layers, whose ``call``
    takes one tensor and nothing else (no ``training`` branch; traced at its first call's shape), whose every weight
    belongs to a layer of the traced graph, and whose layers in the graph have distinct names.
    Whether the graph computes what the layer computes is checked on seeded inputs by the reader.
    """
    if layer in _TRACES:
        return _TRACES[layer]
    _TRACES[layer] = graph = _trace(layer)
    return graph


def _trace(layer):
    import inspect

    import keras

    if isinstance(layer, keras.Model) or not type(layer).__module__.startswith("keras_hub"):
        return None
    if not layer._flatten_layers(include_self=False, recursive=False) or not layer._inbound_nodes:
        return None
    if len(inspect.signature(layer.call).parameters) != 1:
        return None
    arguments = layer._inbound_nodes[0].input_tensors
    if len(arguments) != 1:
        return None
    tensor = arguments[0]
    try:
        inputs = keras.Input(batch_shape=tensor.shape, dtype=tensor.dtype, name=f"{layer.name}_input")
        graph = keras.Model(inputs, layer.call(inputs), name=layer.name, trainable=layer.trainable)
    except Exception:  # a call that needs concrete values: the layer stays one unit
        return None
    names = [operation.name for operation in graph.operations]
    if len(set(names)) != len(names) or {id(v) for v in graph.weights} != {id(v) for v in layer.weights}:
        return None
    return plain_view(graph)


def plain_view(model):
    """``model`` as plain Keras over its own layers (shared, not copied): every functional
    subclass as its graph and every keras-hub layer that can be traced as its graph
    (``traced_graph``), at every depth; ``model`` itself when nothing changes.

    Example:
        >>> plain_view(keras_hub.models.EfficientNetBackbone(...)).__class__.__name__
        'Functional'
    """
    import keras

    if is_functional_subclass(model) and not expandable(model):
        return model  # kept whole
    replacements = {}
    for layer in model.layers:
        view = plain_view(layer) if isinstance(layer, keras.Model) else traced_graph(layer)
        if view is not None and view is not layer:
            replacements[id(layer)] = view
    if not replacements:
        return graph_of(model) if is_functional_subclass(model) else model
    return _rebuilt(model, replacements)


def _rebuilt(model, replacements: dict):
    """``model``'s graph run anew, with the layers in ``replacements`` swapped for their views."""
    import keras
    from keras import tree

    graph = getattr(model, "_functional", None) or model  # a Sequential runs through its Functional
    structure = getattr(graph, "_inputs_struct", None)
    inputs = tree.map_structure(
        lambda t: keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t._keras_history[0].name),
        graph.inputs if structure is None else structure,
    )
    outputs = graph._run_through_graph(inputs, operation_fn=lambda operation: replacements.get(id(operation), operation))
    return keras.Model(inputs, outputs, name=model.name, trainable=model.trainable)


def graph_of(model):
    """A plain ``Functional`` over ``model``'s own layers and tensors (shared, not copied)."""
    import keras

    # The structures (a single tensor, not a list of one) keep the call signature of the model.
    inputs = getattr(model, "_inputs_struct", None)
    outputs = getattr(model, "_outputs_struct", None)
    inputs = model.inputs if inputs is None else inputs
    outputs = model.outputs if outputs is None else outputs
    return keras.Model(inputs, outputs, name=model.name, trainable=model.trainable)


def traced_classes(model) -> list[str]:
    """Class names of the keras-hub layers inside ``model`` written as their traced graphs."""
    return sorted({type(layer).__name__ for layer in model._flatten_layers(include_self=False) if layer in _TRACES and _TRACES[layer] is not None})


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
