"""What a model file holds and which fine-tuning traps it sets: the library behind ``inspect``.

Works on the ModelSpec alone (configs and weight shapes), so it never imports TensorFlow.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from surgeon.graph import Graph, recorded_tensors
from surgeon.io.custom_classes import custom_layers
from surgeon.io.files import MODEL_EXTENSIONS
from surgeon.layer_kinds import BATCH_NORMALIZATION, DROPOUT_LAYERS, frozen_but_trained
from surgeon.shapes import output_shape
from surgeon.params import layer_param_count, param_counts
from surgeon.spec import ModelSpec, code_carriers, effectively_frozen, io_refs, is_model_config, iter_layers, trainable_flag

# Optimizer slot variables per trained weight (Keras 3), plus "iteration" and "learning_rate".
OPTIMIZER_SLOTS = {"Adam": 2, "AdamW": 2, "Nadam": 2, "Adamax": 2, "Lion": 1, "Adagrad": 1, "Adadelta": 2, "Ftrl": 2}


@dataclasses.dataclass
class LayerRow:
    path: str
    class_name: str
    output_shape: list | None  # [None, 224, 224, 3]; None where the file records none and no rule applies
    params: int
    trainable: bool
    nested_in: str


@dataclasses.dataclass
class Hazard:
    kind: str
    message: str
    layers: list[str]
    fix: str


@dataclasses.dataclass
class Inspection:
    path: str | None
    format: str | None
    keras_version: str | None
    dialect: str
    model_name: str
    layers: list[LayerRow]
    total_params: int
    trainable_params: int
    compiled: bool
    optimizer: str | None
    hazards: list[Hazard]
    notes: list[str]
    # Layers of classes beyond Keras' own: {"path", "class_name", "kind" ("keras-hub"/"custom"), "registered_name"}.
    special_layers: list[dict] = dataclasses.field(default_factory=list)
    # BatchNormalization layers no rewrite can reach: {"layer", "reason"}.
    unreachable_batch_norms: list[dict] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["non_trainable_params"] = self.total_params - self.trainable_params
        return data


def inspect_spec(spec: ModelSpec) -> Inspection:
    frozen = effectively_frozen(spec.config)
    shapes = _output_shapes(spec.config)
    rows = []
    for path, layer in spec.layers():
        params = layer_param_count(spec, path)
        rows.append(
            LayerRow(path, layer.get("class_name", "?"), shapes.get(path), params, not frozen[path], path.rpartition("/")[0])
        )
    counts = param_counts(spec)
    optimizer = (spec.compile_config or {}).get("optimizer")
    optimizer_name = optimizer.get("class_name") if isinstance(optimizer, dict) else optimizer
    return Inspection(
        path=spec.source.path, format=spec.source.format, keras_version=spec.source.keras_version, dialect=spec.source.dialect,
        model_name=spec.name, layers=rows, total_params=counts.trainable + counts.non_trainable, trainable_params=counts.trainable,
        compiled=spec.compile_config is not None, optimizer=optimizer_name, hazards=find_hazards(spec, frozen), notes=spec.notes,
        special_layers=[{"path": c.path, "class_name": c.class_name, "kind": c.kind, "registered_name": c.registered_name}
                        for c in custom_layers(spec.config)],
        unreachable_batch_norms=unreachable_batch_norms(spec),
    )


def unreachable_batch_norms(spec: ModelSpec) -> list[dict]:
    """BNs that even ``fold-bn --all`` leaves (with its reason), and BNs inside layers kept as one unit."""
    from surgeon.passes.fold_bn import fold_bn

    found = []
    # The fold plan needs the statistics' values; inspect reads shapes only, and then lists the
    # BNs inside layers kept whole (known to the keras-hub reader, which builds the model).
    if spec.weights and all(isinstance(w, np.ndarray) for ws in spec.weights.values() for w in ws.values()):
        try:
            _, report = fold_bn(spec, fold_all=True)
            found = [{"layer": row["layer"], "reason": row["reason"]} for row in report.changes if row["action"] == "left"]
        except Exception:  # a plan needs weight values: shapes alone (inspect's read) may not do
            found = []
    for path, count in spec.inner_batch_norms.items():
        found.append({"layer": f"{path} ({count} inside)", "reason": "inside a layer surgeon rewrites as one unit"})
    return found


def _output_shapes(model: dict, prefix: str = "") -> dict[str, list]:
    """Layer path -> output shape, read from the shapes Keras records on every consumer's input."""
    shapes: dict[str, list] = {}
    graph = Graph.of(model)
    for name, layer in graph.layers.items():
        if is_model_config(layer):
            shapes.update(_output_shapes(layer, prefix + name + "/"))
    # An InputLayer's own batch shape is among the recorded ones.
    recorded = {tensor: shape for tensor, (shape, _) in recorded_tensors(model).items() if shape is not None}
    for (name, node_index, tensor_index), shape in recorded.items():
        if node_index == 0 and tensor_index == 0:
            shapes.setdefault(prefix + name, list(shape))
    for name, layer in graph.layers.items():
        if is_model_config(layer) and prefix + name in shapes:
            outputs = io_refs(layer["config"]["output_layers"])
            if len(outputs) == 1:
                shapes.setdefault(f"{prefix}{name}/{outputs[0][0]}", shapes[prefix + name])
    for name, _, _ in io_refs(model["config"]["output_layers"]):
        path = prefix + name
        if path in shapes:
            continue
        layer = graph.layers[name]
        inputs = [recorded.get(t) for t in graph.node_inputs.get((name, 0), [])]
        shape = output_shape(layer, inputs[0]) if inputs else None
        if shape is not None:
            shapes[path] = shape
    return shapes



# --- hazards ---------------------------------------------------------------------------------


def find_hazards(spec: ModelSpec, frozen: dict[str, bool]) -> list[Hazard]:
    hazards: list[Hazard] = []
    layers = dict(spec.layers())
    kept_frozen = _frozen_beside_trainable(spec, frozen)
    frozen_bn = [p for p, l in layers.items() if l.get("class_name") == BATCH_NORMALIZATION and frozen[p] and p not in kept_frozen]
    if frozen_bn:
        hazards.append(Hazard(
            "frozen-batchnorm",
            f"{len(frozen_bn)} BatchNormalization layer(s) in frozen parts: they switch to batch statistics if unfrozen, "
            "and older Keras versions use batch statistics even while frozen",
            frozen_bn, f"surgeon fold-bn {_name(spec)} -o {_output(spec, 'folded')}",
        ))
    frozen_dropout = [p for p, l in layers.items() if l.get("class_name") in DROPOUT_LAYERS and frozen[p]]
    # freeze refuses a model whose frozen part holds Dropout (its check would fail); prepare removes it.
    rewrite = (f"surgeon prepare {_name(spec)} -o {_output(spec, 'prepared')}" if frozen_dropout
               else f"surgeon freeze {_name(spec)} -o {_output(spec, 'frozen')}")
    if frozen_dropout:
        hazards.append(Hazard(
            "frozen-dropout",
            f"{len(frozen_dropout)} Dropout/noise layer(s) in frozen parts still act during fit(): the features seen "
            "in training differ from those predict() gives",
            frozen_dropout, f"surgeon prepare {_name(spec)} -o {_output(spec, 'prepared')}",
        ))
    for path, layer in layers.items():
        if not is_model_config(layer):
            continue
        # Only layers with weights: a flag on InputLayer or ReLU changes nothing.
        inner = [p for p, l in iter_layers(layer, path + "/") if p in spec.weights and trainable_flag(l) != trainable_flag(layer)]
        if inner:
            state = "frozen" if not trainable_flag(layer) else "trainable"
            effect = (
                "Keras 3 still trains those layers, since it follows each layer's own flag"
                if state == "frozen" else "they stay frozen although the model says trainable"
            )
            hazards.append(Hazard(
                "nested-flag-mismatch",
                f"nested model '{path}' is {state} but {len(inner)} of its layers say otherwise: {effect}",
                inner, f"{rewrite} --freeze '{path}/*'" if state == "frozen" else rewrite,
            ))
    trained = frozen_but_trained(spec, frozen)
    if trained:
        hazards.append(Hazard(
            "frozen-but-trained",
            f"{len(trained)} frozen layer(s) own layers that Keras rebuilds trainable (attention projections, "
            "ConvLSTM cells, layers a custom class creates): a model loaded from this file trains them whatever the flag says",
            trained, "set layer.trainable = False after load_model, before compile(); or unfreeze them",
        ))
    hazards += _optimizer_hazards(spec, frozen, rewrite)
    code = code_carriers(spec.config)
    if code:
        hazards.append(Hazard(
            "code-in-file", "Lambda layer(s) hold Python code that Keras runs when loading or calling the model",
            code, "rebuild those layers from built-in Keras layers, or pass --allow-code if you trust the file",
        ))
    if spec.source.dialect == "keras2":
        hazards.append(Hazard(
            "keras2-file", "written by Keras 2: Keras 3 cannot load most such files as they are",
            [], f"surgeon convert {_name(spec)} -o converted.keras",
        ))
    return hazards


def _frozen_beside_trainable(spec: ModelSpec, frozen: dict[str, bool]) -> set[str]:
    """Frozen layers fed directly by a trainable layer with weights: frozen on purpose inside the
    trainable part (a BN kept frozen under a fine-tuned conv), not part of a frozen base. fold-bn
    leaves such a BN (folding it would reparametrize the trainable kernel), so it is no hazard."""
    found = set()

    def visit(model: dict, prefix: str) -> None:
        graph = Graph.of(model)
        for name, layer in graph.layers.items():
            if is_model_config(layer):
                visit(layer, f"{prefix}{name}/")
                continue
            producers = [prefix + tensor[0] for tensor in graph.node_inputs.get((name, 0), [])]
            if frozen.get(prefix + name) and any(p in spec.weights and not frozen.get(p) for p in producers):
                found.add(prefix + name)

    visit(spec.config, "")
    return found


def _optimizer_hazards(spec: ModelSpec, frozen: dict[str, bool], rewrite: str) -> list[Hazard]:
    stored = spec.optimizer_variables
    if not stored:
        return []
    hazards = []
    optimizer = (spec.compile_config or {}).get("optimizer") or {}
    optimizer_name = optimizer.get("class_name") if isinstance(optimizer, dict) else str(optimizer)
    slotted = [p for p, ws in spec.weights.items() if frozen.get(p) and any(_has_slot(p, w, stored) for w in ws)]
    if slotted:
        hazards.append(Hazard(
            "flag-after-compile",
            "layers saved as frozen still have optimizer state: trainable=False was set after compile()/fit(), "
            "so the training run that saved this file kept updating them",
            slotted, rewrite,
        ))
    elif spec.source.format == "keras" and spec.source.dialect == "keras3" and optimizer_name in OPTIMIZER_SLOTS:
        trained = sum(1 for p, ws in spec.weights.items() if not frozen.get(p) for w in ws if w not in ("moving_mean", "moving_variance"))
        expected = 2 + OPTIMIZER_SLOTS[optimizer_name] * trained
        # Only "iterations" and "learning_rate": compiled but never trained, the optimizer was
        # never built, so there are no slots to disagree with any flags.
        if len(stored) not in (expected, 2):
            hazards.append(Hazard(
                "flag-after-compile",
                f"the stored {optimizer_name} state has {len(stored)} variables, but the saved trainable flags call for {expected}: "
                "flags were changed after compile()/fit(); Keras will drop the optimizer state on load",
                [], rewrite,
            ))
    if spec.source.dialect == "keras2" and spec.source.format != "h5":
        hazards.append(Hazard(
            "optimizer-state",
            "the file stores Keras 2 optimizer state, which no Keras 3 optimizer can take: rewriting drops it "
            "and compiles a fresh optimizer of the same configuration",
            [], f"surgeon freeze {_name(spec)} -o {_output(spec, 'ready')}",
        ))
    elif spec.source.format == "h5":
        hazards.append(Hazard(
            "optimizer-state",
            "the .h5 file stores optimizer state; Keras 3 restores it into an optimizer built for another variable set, "
            "so fit() fails with \"Unknown variable\"",
            [], rewrite,
        ))
    return hazards


def _has_slot(path: str, weight: str, stored: list[str]) -> bool:
    """Keras 3 names a slot "<optimizer>/<layer>_<weight>_<slot>" (e.g. adam/conv1_kernel_momentum)."""
    needle = f"/{path.rpartition('/')[2]}_{weight}_"
    return any(needle in variable for variable in stored)


def _name(spec: ModelSpec) -> str:
    import os

    return os.path.basename(os.path.normpath(spec.source.path)) if spec.source.path else "MODEL"


def _output(spec: ModelSpec, stem: str) -> str:
    """An output file name for a suggested command, in the input's format (.keras stays .keras)."""
    import os

    extension = os.path.splitext(spec.source.path or "")[1].lower()
    return stem + (extension if extension in MODEL_EXTENSIONS else ".keras")
