"""Parameter counts as Keras reports them, read from a ModelSpec.

Shapes suffice (``inspect`` reads no values), so this works on ``read_model(path, values=False)``.
"""

from __future__ import annotations

import dataclasses

from surgeon.spec import ModelSpec, effectively_frozen, iter_layers
from surgeon.weight_names import is_trainable_weight


@dataclasses.dataclass
class ParamCounts:
    trainable: int
    non_trainable: int


def layer_param_count(spec: ModelSpec, path: str) -> int:
    """Parameters of the layer at ``path``, or of every layer inside it for a nested model."""
    prefix = path + "/"
    return sum(_size(w) for p, ws in spec.weights.items() if p == path or p.startswith(prefix) for w in ws.values())


def param_counts(spec: ModelSpec) -> ParamCounts:
    """Trainable / non-trainable parameters as Keras counts them.

    A weight is trainable when its layer is not frozen and Keras did not create it with
    trainable=False (BatchNormalization's moving statistics, Normalization's mean/variance/count).
    """
    frozen = effectively_frozen(spec.config)
    layers = dict(iter_layers(spec.config))
    trainable = total = 0
    for path, weights in spec.weights.items():
        class_name = layers[path].get("class_name", "") if path in layers else ""
        for name, value in weights.items():
            size = _size(value)
            total += size
            if not frozen.get(path, False) and is_trainable_weight(class_name, name):
                trainable += size
    return ParamCounts(trainable, total - trainable)


def _size(value) -> int:
    return int(getattr(value, "size", 0))
