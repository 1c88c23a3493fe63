"""The one numerical check: reload a written file with plain Keras and compare it with the original.

Every rewriting command calls ``verify_model`` on the file it wrote, before the file is renamed
into place; ``surgeon verify`` calls it on two files (``rewrite.verify_files``, which reads the
reference and resolves the options first). The candidate is always loaded with plain
``keras.models.load_model`` (as a user's fine-tuning job will load it), never with surgeon's
reader, so that a writer bug cannot hide itself.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from surgeon.errors import SurgeonError, one_line
from surgeon.io.keras_model import load_plain

DEFAULT_SAMPLES = 8
DEFAULT_ATOL = 1e-6
# Relative to the output's scale (its largest magnitude): float32 folding error is ~1e-7 of the
# scale, while a BN folded on a wrong axis or without epsilon is off by 1e-3 or more.
DEFAULT_RTOL = 1e-4
# float16 compute rounds every layer to ~1e-3: two equivalent mixed-precision models (folded or
# not) differ by about that much of the output scale (measured: 7e-4 MobileNetV2, 1.1e-3
# ResNet50). 1e-2 still fails a wrong-axis fold, which is off by 1e-1 or more.
MIXED_PRECISION_RTOL = 1e-2


@dataclasses.dataclass
class OutputCheck:
    name: str
    mode: str  # "inference" or "training" (the candidate's mode; the reference is always inference)
    max_abs: float
    max_rel: float
    scale: float
    passed: bool


@dataclasses.dataclass
class VerifyReport:
    passed: bool
    checks: list[OutputCheck]
    samples: int
    atol: float
    rtol: float
    problem: str | None = None  # why the candidate could not even be compared

    @classmethod
    def of(cls, checks: list[OutputCheck], samples: int, atol: float, rtol: float) -> "VerifyReport":
        """The report on ``checks``: passed when every one passed, and there was at least one
        (no output compared is no check at all, not a pass)."""
        return cls(bool(checks) and all(check.passed for check in checks), checks, samples, atol, rtol)

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "max_abs": self.max_abs, "max_rel": self.max_rel}

    @property
    def max_abs(self) -> float:
        return max((c.max_abs for c in self.checks), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((c.max_rel for c in self.checks), default=0.0)


def seeded_inputs(model, samples: int = DEFAULT_SAMPLES, seed: int = 0) -> list[np.ndarray]:
    """Deterministic inputs shaped from the model's input spec, in a range that suits images.

    Float inputs are uniform in [-1, 1] (what ``preprocess_input`` gives most applications);
    pixel values in [0, 255] would saturate a softmax head and hide a wrong weight behind
    outputs of exactly 0 and 1. Integer inputs are small non-negative ids; unknown (None)
    sizes become 32.
    """
    rng = np.random.default_rng(seed)
    arrays = []
    for tensor in model.inputs:
        shape = tuple(samples if i == 0 else (d if d is not None else 32) for i, d in enumerate(tensor.shape))
        dtype = np.dtype(str(tensor.dtype))
        if np.issubdtype(dtype, np.integer):
            arrays.append(rng.integers(0, 10, size=shape).astype(dtype))
        else:
            arrays.append(rng.uniform(-1.0, 1.0, size=shape).astype(dtype))
    return arrays


def load_inputs(path: str, model) -> list[np.ndarray]:
    """User-given inputs: an .npz keyed by input name (or x0, x1, ... / a single array), checked
    against the model's inputs so that a mismatch is a one-line error, not a Keras traceback."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise SurgeonError(f"cannot read inputs from '{path}': {error}; give an .npz of arrays") from None
    names = [t.name for t in model.inputs]
    if isinstance(data, np.ndarray):
        arrays = [data]
    else:
        keys = list(data.keys())
        if all(name in keys for name in names):
            arrays = [data[name] for name in names]
        elif len(keys) == len(names):
            arrays = [data[key] for key in keys]
        else:
            raise SurgeonError(f"'{path}' holds arrays {keys}, but the model takes inputs {names}; key the .npz by input name")
    check_inputs(arrays, model, path)
    return arrays


def check_inputs(arrays: list[np.ndarray], model, source: str) -> None:
    if len(arrays) != len(model.inputs):
        raise SurgeonError(f"'{source}' gives {len(arrays)} input array(s), the model takes {len(model.inputs)}")
    for array, tensor in zip(arrays, model.inputs):
        expected = tuple(tensor.shape)
        fits = array.ndim == len(expected) and all(d is None or d == a for d, a in zip(expected[1:], array.shape[1:]))
        if not fits:
            raise SurgeonError(f"input '{tensor.name}' takes shape {expected}, but '{source}' holds {array.shape}; give arrays of that shape")
    lengths = {array.shape[0] for array in arrays}
    if len(lengths) != 1 or 0 in lengths:
        raise SurgeonError(f"'{source}' must hold the same, non-zero number of samples for every input (got {sorted(lengths)})")


def run(model, inputs: list[np.ndarray], *, training: bool = False, batch_size: int = 32) -> list[np.ndarray]:
    """Outputs as a flat list of arrays, computed in batches with ``model(x, training=...)``."""
    count = inputs[0].shape[0]
    pieces: list[list[np.ndarray]] = []
    for start in range(0, count, batch_size):
        batch = [x[start : start + batch_size] for x in inputs]
        result = model(batch if len(batch) > 1 else batch[0], training=training)
        flat = list(result.values()) if isinstance(result, dict) else (list(result) if isinstance(result, (list, tuple)) else [result])
        pieces.append([np.asarray(r) for r in flat])
    return [np.concatenate(parts) for parts in zip(*pieces)]


def compare(reference: list[np.ndarray], candidate: list[np.ndarray], names: list[str], *, mode: str, atol: float, rtol: float) -> list[OutputCheck]:
    if len(reference) != len(candidate):
        raise SurgeonError(f"the models have {len(reference)} and {len(candidate)} outputs; they are not comparable")
    checks = []
    for name, ref, cand in zip(names, reference, candidate):
        if ref.shape != cand.shape:
            checks.append(OutputCheck(name, mode, float("inf"), float("inf"), 0.0, False))
            continue
        ref64, cand64 = ref.astype(np.float64), cand.astype(np.float64)
        difference = np.abs(ref64 - cand64)
        max_abs = float(difference.max()) if difference.size else 0.0
        scale = float(np.abs(ref64).max()) if ref64.size else 0.0
        max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
        finite = bool(np.isfinite(cand64).all() == np.isfinite(ref64).all())
        checks.append(OutputCheck(name, mode, max_abs, max_rel, scale, finite and max_abs <= atol + rtol * scale))
    return checks


def verify_model(
    reference_model,
    candidate_path: str,
    *,
    inputs: list[np.ndarray] | None = None,
    samples: int = DEFAULT_SAMPLES,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    training_check: bool = False,
    allow_code: bool = False,
    seed: int = 0,
) -> VerifyReport:
    """Compare an in-memory reference model with the file at ``candidate_path``, reloaded by Keras.

    Both run in inference mode on the same inputs. With ``training_check`` the candidate also
    runs in training mode against the reference's inference output: a folded or frozen model
    must not change with the mode.
    """
    try:
        candidate = load_plain(candidate_path, allow_code=allow_code)
    except Exception as error:  # any failure to load is a failed verification, not a crash
        return VerifyReport(False, [], 0, atol, rtol, problem=f"the written file does not load with plain Keras: {one_line(error)}")
    if inputs is None:
        inputs = seeded_inputs(reference_model, samples, seed)
    _check_same_inputs(reference_model, candidate)
    names = list(getattr(reference_model, "output_names", None) or [f"output_{i}" for i in range(len(reference_model.outputs))])
    expected = run(reference_model, inputs)
    checks = compare(expected, run(candidate, inputs), names, mode="inference", atol=atol, rtol=rtol)
    if training_check:
        checks += compare(expected, run(candidate, inputs, training=True), names, mode="training", atol=atol, rtol=rtol)
    return VerifyReport.of(checks, inputs[0].shape[0], atol, rtol)


def _check_same_inputs(reference, candidate) -> None:
    ours = [tuple(t.shape[1:]) for t in reference.inputs]
    theirs = [tuple(t.shape[1:]) for t in candidate.inputs]
    if ours != theirs:
        raise SurgeonError(f"the models take different inputs (reference {ours}, candidate {theirs}); they are not comparable")

