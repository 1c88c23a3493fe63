"""Functional, Sequential and nested models: every layer and call translated, names made legal."""

from __future__ import annotations

import copy
import json

from surgeon.errors import SurgeonError
from surgeon.io.keras2.context import (
    Constant, TensorRef, Translation, TranslationContext, flatten_refs, map_structure,
)
from surgeon.io.keras2.layer_configs import translate_layer_config
from surgeon.io.keras2.nodes import Call, parse_node
from surgeon.io.keras2.shapes import infer_shape, placeholder_shape
from surgeon.io.keras2.tf_ops import GRAPH_RULES
from surgeon.spec import MODEL_CLASSES, keras_tensor, map_io_refs, unique_name


def _safe_name(name: str) -> str:
    return name.replace("/", "_")


def _make_renames(names: list[str], context: TranslationContext) -> dict[str, str]:
    taken = set(names)
    out = {}
    for n in names:
        if "/" in n:
            new = unique_name(_safe_name(n), taken)
            out[n] = new
            context.renamed[n] = new
            context.note("'/' in layer names replaced by '_' (Keras 3 refuses '/')", n)
    return out


# ---------------------------------------------------------------------------------------------
# nested models


def _model_has_input(cls, config) -> bool:
    """Keras 2 counts a nested model's own creation node (so its first call is node 1) when it
    was built on an InputLayer: always for Functional, for Sequential when it has an input."""
    if cls in ("Functional", "Model"):
        return True
    layers = config if isinstance(config, list) else config.get("layers", [])
    if not layers:
        return False
    first = layers[0]
    c = first.get("config", {})
    return first.get("class_name") == "InputLayer" or any(
        k in c for k in ("batch_input_shape", "input_shape", "input_dim")
    )


def _set_untrainable(config, context, name):
    """Propagate a frozen nested model's trainable=False to every layer inside it."""
    for layer in config.get("layers", []):
        layer_config = layer.get("config", {})
        if layer_config.get("trainable", True) and layer.get("class_name") != "InputLayer":
            layer_config["trainable"] = False
            context.note("trainable: false of a frozen nested model propagated to its layers", name)
        if layer.get("class_name") in MODEL_CLASSES:
            _set_untrainable(layer_config, context, name)


# ---------------------------------------------------------------------------------------------
# functional models


def _translate_functional(config: dict, context: TranslationContext) -> tuple[dict, dict]:
    """Returns (Keras 3 functional config, {output ref key: shape})."""
    layers = config["layers"]
    old_names = [layer.get("name") or layer["config"]["name"] for layer in layers]
    renames = _make_renames(old_names, context)
    taken = {renames.get(n, n) for n in old_names}
    names_set = set(old_names)
    cls_of = {n: layer["class_name"] for n, layer in zip(old_names, layers)}

    # node offsets of nested models (Keras 2 counted their creation node)
    offsets = {}
    for n, layer in zip(old_names, layers):
        if layer["class_name"] in MODEL_CLASSES and _model_has_input(
            layer["class_name"], layer["config"]
        ):
            offsets[n] = 1

    # parse every call
    calls: dict[str, list[Call]] = {}
    for n, layer in zip(old_names, layers):
        preserve = layer["class_name"] in ("TFOpLambda", "SlicingOpLambda")
        calls[n] = [parse_node(node, names_set, preserve)
                    for node in (layer.get("inbound_nodes") or [])]
    # a nested model referenced with node 0 was not built on an input: no offset
    for n in list(offsets):
        for c in calls.values():
            for call in c:
                for r in flatten_refs([call.args, call.kwargs]):
                    if r.name == n and r.node == 0:
                        offsets.pop(n, None)
    if offsets:
        context.note("node indices of calls to nested models shifted by -1 (Keras 3 does not count "
                 "the model's own creation node in inbound nodes)")

    alias: dict[tuple, TensorRef] = {}  # (old name, k2 node, tensor) -> Keras 3 ref

    def fix(r):
        if not isinstance(r, TensorRef):
            return r.value if isinstance(r, Constant) else r
        if r.name not in names_set:
            raise SurgeonError(f"model config refers to an unknown layer {r.name!r}")
        key = (r.name, r.node, r.tensor)
        if key in alias:
            return alias[key]
        return TensorRef(renames.get(r.name, r.name), r.node - offsets.get(r.name, 0), r.tensor)

    shapes: dict[tuple, list | None] = {}
    dtypes: dict[tuple, str] = {}

    def shape_of(ref: TensorRef):
        return shapes.get(ref.key())

    out_layers = []
    for n, layer in zip(old_names, layers):
        cls = layer["class_name"]
        new_name = renames.get(n, n)
        layer_config = layer["config"]
        layer_calls = [
            Call(map_structure(fix, c.args), map_structure(fix, c.kwargs)) for c in calls[n]
        ]
        if cls in GRAPH_RULES:
            if len(layer_calls) != 1:
                raise SurgeonError(f"layer {n!r} ({cls}) is called {len(layer_calls)} times; "
                                   "surgeon translates only single-call op layers")
            new_layers = GRAPH_RULES[cls](cls, layer_config, new_name, layer_calls[0], shape_of, context,
                                          taken)
            for new_layer in new_layers:
                ins = flatten_refs(new_layer.args)
                in_shapes = [shape_of(r) for r in ins]
                inferred = infer_shape(new_layer.cls, new_layer.config, in_shapes)
                shapes[(new_layer.config["name"], 0, 0)] = placeholder_shape(
                    inferred, in_shapes[0] if in_shapes else None
                )
                dtypes[(new_layer.config["name"], 0, 0)] = (new_layer.config["dtype"]["config"]["name"])
                out_layers.append(_emit_layer(new_layer.cls, new_layer.config, [Call(new_layer.args, new_layer.kwargs)],
                                              shapes, dtypes))
            alias[(n, 0, 0)] = TensorRef(new_layers[-1].config["name"], 0, 0)
            continue

        if cls in MODEL_CLASSES:
            new_cls, new_config, out_shapes = _translate_nested(cls, layer_config, context, n)
            new_config["name"] = new_name
            for i in range(len(layer_calls)):
                for t, s in enumerate(out_shapes):
                    shapes[(new_name, i, t)] = s
                    dtypes[(new_name, i, t)] = "float32"
        else:
            new_cls, new_config = translate_layer_config(cls, layer_config, context, n)
            new_config["name"] = new_name
            if new_cls == "InputLayer":
                shapes[(new_name, 0, 0)] = list(new_config.get("batch_shape") or [None])
                dtypes[(new_name, 0, 0)] = new_config.get("dtype") or "float32"
            for i, call in enumerate(layer_calls):
                ins = flatten_refs(call.args)
                in_shapes = [shape_of(r) for r in ins]
                inferred = infer_shape(new_cls, new_config, in_shapes)
                shapes[(new_name, i, 0)] = placeholder_shape(inferred, in_shapes[0] if in_shapes else None)
                policy = new_config.get("dtype")
                dtypes[(new_name, i, 0)] = (
                    policy["config"]["name"] if isinstance(policy, dict) else (policy or "float32")
                )
                if dtypes[(new_name, i, 0)].startswith("mixed_"):
                    dtypes[(new_name, i, 0)] = dtypes[(new_name, i, 0)].split("_")[-1]
        out_layers.append(_emit_layer(new_cls, new_config, layer_calls, shapes, dtypes))

    def fix_io(entry, is_output):
        name, node, tensor = entry[0], entry[1], entry[2]
        key = (name, node, tensor)
        if key in alias:
            r = alias[key]
            return [r.name, r.node, r.tensor]
        new = renames.get(name, name)
        off = offsets.get(name, 0)
        # Keras 3 output_layers count a nested *Functional*'s creation node (it subtracts 1
        # itself); a nested Sequential's they do not.
        if is_output and cls_of.get(name) in ("Functional", "Model"):
            off = 0
        return [new, node - off, tensor]

    input_layers = map_io_refs(config["input_layers"], lambda ref: fix_io(ref, False))
    output_layers = map_io_refs(config["output_layers"], lambda ref: fix_io(ref, True))
    # Keras 2 always wrote lists; Keras 3 writes a lone [name, node, tensor] for a model of one
    # input (or output), and then takes / returns a tensor rather than a list of one, as
    # Keras 2 did.
    if isinstance(input_layers, list) and len(input_layers) == 1 and isinstance(
            input_layers[0], list):
        input_layers = input_layers[0]
    if isinstance(output_layers, list) and len(output_layers) == 1 and isinstance(
            output_layers[0], list):
        output_layers = output_layers[0]
    new = {"name": config.get("name", "functional"), "trainable": config.get("trainable", True),
           "layers": out_layers, "input_layers": input_layers, "output_layers": output_layers}
    # output shapes for callers (nested models)
    out_shapes = []
    flat_out = output_layers if isinstance(output_layers[0], list) else [output_layers]
    for e in flat_out:
        node = e[1]
        if cls_of.get(_old_name(e[0], renames)) in ("Functional", "Model"):
            node -= 1
        out_shapes.append(shapes.get((e[0], node, e[2])))
    return new, out_shapes


def _old_name(new, renames):
    for k, v in renames.items():
        if v == new:
            return k
    return new


def _emit_layer(cls, config, calls: list[Call], shapes, dtypes) -> dict:
    def ser(x):
        if isinstance(x, TensorRef):
            inferred = shapes.get(x.key())
            return keras_tensor(x.name, x.node, x.tensor, list(placeholder_shape(inferred)), dtypes.get(x.key(), "float32"))
        return x

    nodes = []
    for call in calls:
        nodes.append({"args": map_structure(ser, call.args), "kwargs": map_structure(ser, call.kwargs)})
    return {"class_name": cls, "config": config, "name": config["name"], "inbound_nodes": nodes}


def _translate_nested(cls, config, context, name):
    """A nested model's config -> (class_name, Keras 3 config, its output shapes)."""
    if cls == "Sequential":
        new_config, out_shape = _translate_sequential(config, context)
        out_shapes = [out_shape]
        new_cls = "Sequential"
    else:
        new_config, out_shapes = _translate_functional(config, context)
        new_cls = "Functional"
        if cls != "Functional":
            context.note(f"class {cls} written as Functional", name)
    if isinstance(config, dict) and config.get("trainable", True) is False:
        new_config["trainable"] = False
        _set_untrainable(new_config, context, name)
    return new_cls, new_config, [s or [None] for s in out_shapes]


# ---------------------------------------------------------------------------------------------
# Sequential


def _translate_sequential(cfg, ctx: TranslationContext) -> tuple[dict, list | None]:
    if isinstance(cfg, list):
        ctx.note("list-shaped Sequential config (standalone Keras 2.0-2.2) written as a dict")
        cfg = {"name": "sequential", "layers": cfg}
    layers = [copy.deepcopy(layer) for layer in cfg.get("layers", [])]
    out = []
    old_names = [layer["config"].get("name") for layer in layers]
    renames = _make_renames([n for n in old_names if n], ctx)
    taken = {renames.get(n, n) for n in old_names if n}
    shape = None
    build_shape = cfg.get("build_input_shape")
    if layers and layers[0]["class_name"] != "InputLayer":
        c0 = layers[0]["config"]
        bis = c0.get("batch_input_shape")
        if bis is None and "input_shape" in c0:
            bis = [None] + list(c0["input_shape"])
        if bis is None and "input_dim" in c0:
            bis = [None, c0["input_dim"]]
        if bis is not None:
            in_name = unique_name(f"{renames.get(old_names[0], old_names[0])}_input", taken)
            dt = c0.get("dtype", "float32")
            if isinstance(dt, dict):
                dt = (dt.get("config") or {}).get("name", "float32")
            out.append({"class_name": "InputLayer", "config": {
                "batch_shape": list(bis), "dtype": dt, "sparse": False, "ragged": False,
                "name": in_name}})
            ctx.note("batch_input_shape of a Sequential's first layer written as an InputLayer")
            shape = list(bis)
    for layer, old in zip(layers, old_names):
        cls = layer["class_name"]
        name = renames.get(old, old)
        if cls in GRAPH_RULES:
            raise SurgeonError(
                f"layer {old!r} ({cls}) inside a Sequential model is not translated; rebuild "
                "the model as a functional one"
            )
        if cls in MODEL_CLASSES:
            new_cls, new_cfg, out_shapes = _translate_nested(cls, layer["config"], ctx, old)
            new_cfg["name"] = name
            shape = out_shapes[0]
        else:
            new_cls, new_cfg = translate_layer_config(cls, layer["config"], ctx, old)
            new_cfg["name"] = name
            if new_cls == "InputLayer":
                shape = list(new_cfg.get("batch_shape") or [None])
            else:
                shape = infer_shape(new_cls, new_cfg, [shape] if shape else [])
        out.append({"class_name": new_cls, "config": new_cfg})
    new = {"name": cfg.get("name", "sequential"), "trainable": cfg.get("trainable", True),
           "layers": out}
    if out and out[0]["class_name"] == "InputLayer":
        new["build_input_shape"] = out[0]["config"]["batch_shape"]
    elif build_shape:
        new["build_input_shape"] = build_shape
    return new, shape


def translate_model_config(config: dict) -> Translation:
    """Translate a Keras 2 ``model_config`` (``{"class_name", "config"}``) into Keras 3's.

    Raises :class:`SurgeonError` (one line naming the layer, the problem and the way out) when a
    layer cannot be expressed with built-in Keras 3 layers. Lambda layers (marshalled bytecode) pass
    as they are: the one gate for code is ``keras_model.check_code_layers``, past the door.
    """
    if isinstance(config, (str, bytes)):
        config = json.loads(config)
    if not isinstance(config, dict) or "class_name" not in config or "config" not in config:
        raise SurgeonError("model_config is not a Keras model config (no class_name/config)")
    context = TranslationContext()
    cls = config["class_name"]
    if cls == "Sequential":
        new_config, _ = _translate_sequential(config["config"], context)
        if isinstance(config["config"], dict) and config["config"].get("trainable", True) is False:
            _set_untrainable(new_config, context, new_config["name"])
        out = {"class_name": "Sequential", "config": new_config}
    elif cls in ("Functional", "Model"):
        new_config, _ = _translate_functional(config["config"], context)
        if cls == "Model":
            context.note("class Model written as Functional")
        if config["config"].get("trainable", True) is False:
            _set_untrainable(new_config, context, new_config["name"])
        out = {"class_name": "Functional", "config": new_config}
    else:
        raise SurgeonError(
            f"model class {cls!r} is not a Functional or Sequential model; subclassed models "
            "cannot be read from an .h5 config"
        )
    return Translation(config=out, renamed=dict(context.renamed), notes=context.notes())
