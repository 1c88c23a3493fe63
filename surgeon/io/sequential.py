"""Turn Sequential configs into Functional ones, so that every pass sees one graph form."""

from __future__ import annotations

from surgeon.errors import SurgeonError
from surgeon.shapes import output_shape
from surgeon.spec import is_model_config, keras_tensor, layer_name, unique_name


def sequential_input_layer(first_layer: dict, build_input_shape, taken: set[str]) -> dict | None:
    """The InputLayer a Sequential model builds for itself, or None if nothing records its shape.

    The shape comes from the model's ``build_input_shape`` or the first layer's own keys (Keras 3
    ``batch_shape``; Keras 2 ``batch_input_shape``, ``input_shape``, ``input_dim``). The name is
    tf.keras 2's, ``<first layer>_input``, made unique among ``taken`` (which it joins). Both
    doors use this: the Keras 2 translation and the Sequential-to-Functional conversion.
    """
    first = first_layer.get("config", {})
    shape = build_input_shape or first.get("batch_shape") or first.get("batch_input_shape")
    if shape is None and first.get("input_shape") is not None:
        shape = [None] + list(first["input_shape"])
    if shape is None and first.get("input_dim") is not None:
        shape = [None, first["input_dim"]]
    if shape is None:
        return None
    name = unique_name(f"{first.get('name') or 'sequential'}_input", taken)
    config = {"batch_shape": list(shape), "dtype": _input_dtype(first.get("dtype")), "sparse": False, "ragged": False, "name": name}
    return {"class_name": "InputLayer", "config": config, "name": name}


def _input_dtype(policy) -> str:
    """The dtype of the values a layer takes: a policy's variable dtype (mixed_float16 takes float32)."""
    name = (policy.get("config") or {}).get("name") if isinstance(policy, dict) else policy
    if not isinstance(name, str):
        return "float32"
    return "float32" if name.startswith("mixed_") else name


def convert_sequentials(model: dict) -> None:
    """Given a Sequential config (possibly nested ones inside). Result, in place: Functional ones."""
    for layer in model["config"]["layers"]:
        if is_model_config(layer):
            convert_sequentials(layer)
    if model.get("class_name") != "Sequential":
        return
    config = model["config"]
    layers = config["layers"]
    if not layers:
        raise SurgeonError(f"Sequential model '{config.get('name')}' has no layers")
    if layers[0].get("class_name") != "InputLayer":
        input_layer = sequential_input_layer(layers[0], config.get("build_input_shape"), {layer_name(layer) for layer in layers})
        if input_layer is None:
            raise SurgeonError(
                f"Sequential model '{config.get('name')}' has no input shape, so it was never built; "
                "build it (call it on data or add keras.Input) and save it again"
            )
        layers.insert(0, input_layer)
    previous = layers[0]
    previous.setdefault("name", layer_name(previous))
    previous["inbound_nodes"] = []
    shape = previous["config"].get("batch_shape") or previous["config"].get("batch_input_shape")
    for layer in layers[1:]:
        layer["name"] = layer_name(layer)
        # .keras files record the input shape of each layer with weights (build_config), .h5 files
        # only the model's input shape: the rest follows from the layers' configs where surgeon
        # knows the rule, and stays unknown (None) where it does not.
        recorded = (layer.get("build_config") or {}).get("input_shape") or shape
        layer["inbound_nodes"] = [{"args": [keras_tensor(layer_name(previous), 0, 0, shape=recorded)], "kwargs": {}}]
        previous, shape = layer, output_shape(layer, recorded)
    model["class_name"] = "Functional"
    if "module" in model:
        model["module"] = "keras.src.models.functional"
        model["registered_name"] = "Functional"
    # A single leaf, not a list of one: Keras would otherwise return a list from predict().
    config["input_layers"] = [layer_name(layers[0]), 0, 0]
    config["output_layers"] = [layer_name(previous), 0, 0]
    for key in ("build_input_shape", "dtype"):
        config.pop(key, None)
