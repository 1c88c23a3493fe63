"""Which layers' weights differ between two model files, and by how much (no TensorFlow).

The question a user asks after a fine-tuning job: did the frozen part move? Files are read with
surgeon's reader (h5py / zip), layers are matched by path, weights by name.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from surgeon.io import read_model
from surgeon.spec import ModelSpec, effectively_frozen

IDENTICAL, CLOSE, DIFFERENT, ONLY_A, ONLY_B = "identical", "within-atol", "different", "only-in-a", "only-in-b"


@dataclasses.dataclass
class LayerDiff:
    layer: str
    status: str  # IDENTICAL (bit for bit), CLOSE (max abs <= atol), DIFFERENT, ONLY_A, ONLY_B
    frozen_in_a: bool | None
    max_abs: float | None = None
    rel_norm: float | None = None  # ||b - a|| / ||a|| over all the layer's weights
    weights: list[dict] = dataclasses.field(default_factory=list)  # per weight: name, status, max_abs, rel_norm


@dataclasses.dataclass
class DiffReport:
    a: str
    b: str
    atol: float
    layers: list[LayerDiff]

    @property
    def same(self) -> bool:
        return all(d.status in (IDENTICAL, CLOSE) for d in self.layers)

    def count(self, status: str) -> int:
        return sum(1 for d in self.layers if d.status == status)

    @property
    def frozen_unchanged(self) -> bool | None:
        """True when every layer frozen in A is bit-for-bit identical in B (None: nothing frozen)."""
        frozen = [d for d in self.layers if d.frozen_in_a]
        return all(d.status == IDENTICAL for d in frozen) if frozen else None

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data.update(same=self.same, frozen_unchanged=self.frozen_unchanged,
                    counts={s: self.count(s) for s in (IDENTICAL, CLOSE, DIFFERENT, ONLY_A, ONLY_B)})
        return data


def diff_files(path_a: str, path_b: str, *, atol: float = 0.0) -> DiffReport:
    """Compare the weights of two model files layer by layer.

    Example:
        >>> report = diff_files("fixtures/nested.h5", "fixtures/nested.keras")  # one model, both formats
        >>> report.frozen_unchanged, [d.layer for d in report.layers if d.status == "different"]
        (True, [])
    """
    return diff_specs(read_model(path_a), read_model(path_b), atol=atol, names=(path_a, path_b))


def diff_specs(a: ModelSpec, b: ModelSpec, *, atol: float = 0.0, names: tuple[str, str] = ("a", "b")) -> DiffReport:
    frozen = effectively_frozen(a.config)
    layers = []
    for path in list(a.weights) + [p for p in b.weights if p not in a.weights]:
        if path not in b.weights:
            layers.append(LayerDiff(path, ONLY_A, frozen.get(path)))
        elif path not in a.weights:
            layers.append(LayerDiff(path, ONLY_B, None))
        else:
            layers.append(_layer_diff(path, a.weights[path], b.weights[path], frozen.get(path), atol))
    return DiffReport(names[0], names[1], atol, layers)


def _layer_diff(path: str, a: dict, b: dict, frozen: bool | None, atol: float) -> LayerDiff:
    if set(a) != set(b) and len(a) == len(b):
        # Same count, other names: a writer that names the weights of a class it does not know by
        # position ("0") against Keras' own names ("kernel"). Weights are in layer.weights order
        # in both, so pair them by position, under A's names.
        b = dict(zip(a, b.values()))
    rows = []
    squared_difference = squared_reference = 0.0
    worst = 0.0
    for name in list(a) + [n for n in b if n not in a]:
        if name not in a or name not in b:
            rows.append({"name": name, "status": ONLY_A if name in a else ONLY_B, "max_abs": None, "rel_norm": None})
            worst = float("inf")
            continue
        left, right = np.asarray(a[name]), np.asarray(b[name])
        if left.shape != right.shape:
            rows.append({"name": name, "status": DIFFERENT, "max_abs": None, "rel_norm": None,
                         "shapes": [list(left.shape), list(right.shape)]})
            worst = float("inf")
            continue
        if left.dtype == right.dtype and left.tobytes() == right.tobytes():
            rows.append({"name": name, "status": IDENTICAL, "max_abs": 0.0, "rel_norm": 0.0})
            squared_reference += float(np.sum(left.astype(np.float64) ** 2))
            continue
        delta = right.astype(np.float64) - left.astype(np.float64)
        max_abs = float(np.max(np.abs(delta))) if delta.size else 0.0
        norm_a = float(np.linalg.norm(left.astype(np.float64)))
        squared_difference += float(np.sum(delta**2))
        squared_reference += norm_a**2
        rows.append({"name": name, "status": CLOSE if max_abs <= atol else DIFFERENT, "max_abs": max_abs,
                     "rel_norm": _ratio(float(np.linalg.norm(delta)), norm_a)})
        worst = max(worst, max_abs)
    statuses = {row["status"] for row in rows}
    if statuses <= {IDENTICAL}:
        status = IDENTICAL
    elif statuses <= {IDENTICAL, CLOSE}:
        status = CLOSE
    else:
        status = DIFFERENT
    rel = _ratio(squared_difference**0.5, squared_reference**0.5) if worst != float("inf") else None
    return LayerDiff(path, status, frozen, None if worst == float("inf") else worst, rel, rows)


def _ratio(numerator: float, denominator: float) -> float:
    if denominator > 0:
        return numerator / denominator
    return 0.0 if numerator == 0 else float("inf")
