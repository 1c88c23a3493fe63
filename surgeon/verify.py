"""The one numerical check: reload a written file with plain Keras and compare it with the original.

Every rewriting command calls ``verify_model`` on the file it wrote, before the file is renamed
into place; ``surgeon verify`` calls it on two files (``rewrite.verify_files``, which reads the
reference and resolves the options first). The candidate is always loaded with plain
``keras.models.load_model`` (as a user's fine-tuning job will load it), never with surgeon's
reader, so that a writer bug cannot hide itself.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from surgeon.errors import SurgeonError, one_line
from surgeon.io.keras_model import load_plain

DEFAULT_SAMPLES = 8
# None: the absolute floor of the tolerance is measured per output (``rounding_floors``), not a
# constant. A constant 1e-6 was six times the whole signal of an untrained deep base whose outputs
# are ~1.6e-7, so any rewrite of it passed.
DEFAULT_ATOL = None
# Relative to the output's scale (its largest magnitude): float32 folding error is ~1e-7 of the
# scale, while a BN folded on a wrong axis or without epsilon is off by 1e-3 or more.
DEFAULT_RTOL = 1e-4
# The floor is this many times what the outputs move when every input value moves by one float32
# rounding step (one ulp): a rewrite rounds at every layer (folded kernels, reordered sums), not
# only at the input, so its legitimate error is a multiple of that.
ROUNDING_FACTOR = 8
# Outputs that vary across samples by more than this share of their scale are informative
# whatever the rounding floor (~1e-6 of the scale); below it the floor is measured to decide.
CLEAR_SPREAD = 1e-2
# When the seeded inputs give outputs that do not vary, these input ranges are tried in turn.
INPUT_SPREADS = (10.0, 0.1, 100.0)
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
    # The absolute part of the tolerance: max abs <= rtol x scale + floor. 0 when the relative
    # part alone passed every check, so no floor was measured (with_floors).
    floor: float = 0.0


@dataclasses.dataclass
class VerifyReport:
    passed: bool
    checks: list[OutputCheck]
    samples: int
    atol: float | None  # None: floors measured from float32 rounding (OutputCheck.floor)
    rtol: float
    problem: str | None = None  # why the candidate could not even be compared
    notes: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def of(cls, checks: list[OutputCheck], samples: int, atol: float | None, rtol: float, notes: list[str] | None = None) -> "VerifyReport":
        """The report on ``checks``: passed when every one passed, and there was at least one
        (no output compared is no check at all, not a pass)."""
        return cls(bool(checks) and all(check.passed for check in checks), checks, samples, atol, rtol, notes=list(notes or []))

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "max_abs": self.max_abs, "max_rel": self.max_rel}

    @property
    def max_abs(self) -> float:
        return max((c.max_abs for c in self.checks), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((c.max_rel for c in self.checks), default=0.0)


def seeded_inputs(model, samples: int = DEFAULT_SAMPLES, seed: int = 0, spread: float = 1.0) -> list[np.ndarray]:
    """Deterministic inputs shaped from the model's input spec, in a range that suits images.

    Float inputs are uniform in [-spread, spread], by default [-1, 1] (what ``preprocess_input`` gives most applications);
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
            arrays.append(rng.uniform(-spread, spread, size=shape).astype(dtype))
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


# Input values per forward call. A call's activations grow with its batch (ResNet50 at 224x224:
# about 150 MB per image in eager mode), and they come on top of the model: one 224x224 RGB image
# per call keeps verification's peak memory near a plain load_model (issue 15); small inputs
# still go 32 at a time.
BATCH_VALUES = 224 * 224 * 3


def run(model, inputs: list[np.ndarray], *, training: bool = False, batch_size: int = 32) -> list[np.ndarray]:
    """Outputs as a flat list of arrays, computed in batches with ``model(x, training=...)``."""
    import keras

    count = inputs[0].shape[0]
    batch_size = call_size(inputs, batch_size)
    pieces: list[list[np.ndarray]] = []
    for start in range(0, count, batch_size):
        batch = [x[start : start + batch_size] for x in inputs]
        result = model(batch if len(batch) > 1 else batch[0], training=training)
        # keras.tree.flatten orders a dict by key, as model.outputs and output_names are.
        flat = keras.tree.flatten(result)
        pieces.append([np.asarray(r) for r in flat])
    return [np.concatenate(parts) for parts in zip(*pieces)]


def call_size(inputs: list[np.ndarray], batch_size: int = 32) -> int:
    """Samples per forward call of ``run``: ``batch_size``, fewer for large inputs (BATCH_VALUES)."""
    per_sample = sum(int(np.prod(x.shape[1:], dtype=np.int64)) for x in inputs)
    return max(1, min(batch_size, BATCH_VALUES // max(per_sample, 1)))


def compare(reference: list[np.ndarray], candidate: list[np.ndarray], names: list[str], *, mode: str, rtol: float,
            floors: list[float] | None) -> list[OutputCheck]:
    """One check per output: pass if ``max abs <= rtol x scale + floor`` (``floors`` from
    ``rounding_floors``; None: no floor, the relative tolerance alone)."""
    if len(reference) != len(candidate):
        raise SurgeonError(f"the models have {len(reference)} and {len(candidate)} outputs; they are not comparable")
    if floors is None:
        floors = [0.0] * len(names)
    checks = []
    for name, ref, cand, floor in zip(names, reference, candidate, floors):
        if ref.shape != cand.shape:
            checks.append(OutputCheck(name, mode, float("inf"), float("inf"), 0.0, False, floor))
            continue
        ref64, cand64 = ref.astype(np.float64), cand.astype(np.float64)
        difference = np.abs(ref64 - cand64)
        max_abs = float(difference.max()) if difference.size else 0.0
        scale = float(np.abs(ref64).max()) if ref64.size else 0.0
        max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
        finite = bool(np.isfinite(cand64).all() == np.isfinite(ref64).all())
        checks.append(OutputCheck(name, mode, max_abs, max_rel, scale, finite and max_abs <= rtol * scale + floor, floor))
    return checks


def rounding_floors(model, inputs: list[np.ndarray], expected: list[np.ndarray], atol: float | None = None) -> list[float]:
    """Per output, the absolute error float32 rounding alone can explain (or ``atol`` if the user gave one).

    Measured, not assumed: every float input value is moved by one ulp (float32 rounding step) in a
    random direction, and the floor is ROUNDING_FACTOR times the largest change that makes in each
    output. It is large where the model amplifies rounding (outputs that are small differences of
    large intermediates) and vanishes where the outputs are tiny, so that the relative term decides.

    Example (a floor the user gave is used for every output, and nothing runs):
        >>> rounding_floors(None, [], [np.zeros(3), np.ones(2)], atol=1e-6)
        [1e-06, 1e-06]
    """
    if atol is not None:
        return given_floors(atol, len(expected))
    rng = np.random.default_rng(1)
    nudged = []
    for x in inputs:
        if np.issubdtype(x.dtype, np.floating):
            towards = np.where(rng.random(x.shape) < 0.5, -np.inf, np.inf).astype(x.dtype)
            x = np.nextafter(x, towards)
        nudged.append(x)
    moved = run(model, nudged)
    return [ROUNDING_FACTOR * float(np.abs(a.astype(np.float64) - b).max()) if a.size else 0.0 for a, b in zip(expected, moved)]


def given_floors(atol: float | None, count: int) -> list[float] | None:
    """The floors of ``count`` outputs when the user gave ``--atol``; None (to be measured) otherwise."""
    return None if atol is None else [float(atol)] * count


def clearly_varying(expected: list[np.ndarray]) -> bool:
    """Whether every output varies across the samples by more than CLEAR_SPREAD of its scale,
    far above any float32 rounding floor: no floor is needed to know the outputs are informative.

    Example:
        >>> clearly_varying([np.array([[1.0, 2.0], [1.5, 2.5]])]), clearly_varying([np.ones((2, 3))])
        (True, False)
    """
    for values in expected:
        values = values.astype(np.float64)
        scale = float(np.abs(values).max()) if values.size else 0.0
        if values.shape[0] < 2 or not scale > 0 or not np.ptp(values, axis=0).max() > CLEAR_SPREAD * scale:
            return False
    return True


def with_floors(checks_for: Callable[[list[float] | None], list[OutputCheck]], floors: list[float] | None,
                measure: Callable[[], list[float]] | None) -> list[OutputCheck]:
    """``checks_for(floors)``, measuring unknown floors (None) only when they could change a verdict.

    A floor only widens a tolerance, so checks that all pass on the relative tolerance alone pass
    with it too; the forward pass that measures the floors (a third of a ResNet50 verification)
    runs only when one fails without them. With nothing to ``measure`` them, none is granted.
    """
    if floors is not None:
        return checks_for(floors)
    checks = checks_for(None)
    if all(check.passed for check in checks) or measure is None:
        return checks
    return checks_for(measure())


def constant_outputs(expected: list[np.ndarray], floors: list[float], names: list[str]) -> list[str]:
    """Outputs that prove nothing: all zero, or (with several samples) the same for every input."""
    found = []
    for name, values, floor in zip(names, expected, floors):
        values = values.astype(np.float64)
        if not values.size or not np.abs(values).max() > 0:
            found.append(name)
        elif values.shape[0] > 1 and not np.ptp(values, axis=0).max() > floor:
            found.append(name)
    return found


def informative_inputs(model, inputs: list[np.ndarray] | None, samples: int, seed: int, atol: float | None, names: list[str]):
    """``(inputs, expected, floors, notes, problem)``: inputs on which the model's outputs vary.

    ``floors`` is None when no floor was needed to tell that (every output clearly varies) and
    ``atol`` is None: ``with_floors`` measures them if a comparison needs them.

    A comparison of outputs that are all zero, or identical for every input, passes for any
    rewrite. Seeded inputs are widened or narrowed (INPUT_SPREADS) until every output varies;
    user-given inputs are kept. If no inputs make them vary, ``problem`` says so: the check fails
    rather than pass on nothing.
    """
    given = inputs is not None
    trials = [inputs] if given else [seeded_inputs(model, samples, seed, spread) for spread in (1.0, *INPUT_SPREADS)]
    notes: list[str] = []
    for trial in trials:
        expected = run(model, trial)
        if atol is None and clearly_varying(expected):
            floors, constant = None, []  # measured later, if a comparison needs them (with_floors)
        else:
            floors = rounding_floors(model, trial, expected, atol)
            constant = constant_outputs(expected, floors, names)
        if not constant:
            return trial, expected, floors, notes, None
        if not notes:
            notes.append(f"output(s) {', '.join(constant)} are all zero or the same for every input tried: "
                         "a comparison on them proves nothing" + ("" if given else "; trying wider and narrower inputs"))
    where = "the inputs given" if given else f"seeded inputs in [-s, s] for s in 1, {', '.join(f'{s:g}' for s in INPUT_SPREADS)}"
    problem = (f"output(s) {', '.join(constant)} are all zero or the same for every input ({where}), so no comparison "
               "can tell a correct rewrite from a wrong one; give real inputs with --inputs X.npz (or --no-verify)")
    return trial, expected, floors, notes, problem


@dataclasses.dataclass
class ReferenceOutputs:
    """What a verification keeps of the reference model: its outputs on informative inputs, with
    the rounding floors measured on it, not the model (so the model can be freed first)."""

    inputs: list[np.ndarray]
    input_shapes: list[tuple]
    names: list[str]
    outputs: list[np.ndarray]
    floors: list[float] | None  # None: not measured yet (see with_floors)
    notes: list[str]
    problem: str | None = None  # no inputs made the outputs vary: a comparison would prove nothing
    # How to measure the floors if a comparison needs them; the caller sets it, so that this
    # object does not keep the reference model alive.
    measure_floors: Callable[[], list[float]] | None = None


def reference_outputs(reference_model, inputs: list[np.ndarray] | None = None, *, samples: int = DEFAULT_SAMPLES,
                      seed: int = 0, atol: float | None = DEFAULT_ATOL) -> ReferenceOutputs:
    """Run the reference in inference mode on informative inputs; the model can be dropped afterwards."""
    names = output_names(reference_model)
    shapes = [tuple(t.shape[1:]) for t in reference_model.inputs]
    inputs, outputs, floors, notes, problem = informative_inputs(reference_model, inputs, samples, seed, atol, names)
    return ReferenceOutputs(inputs, shapes, names, outputs, floors, notes, problem)


def output_names(model) -> list[str]:
    return list(getattr(model, "output_names", None) or [f"output_{i}" for i in range(len(model.outputs))])


def verify_model(
    reference_model,
    candidate_path: str,
    *,
    inputs: list[np.ndarray] | None = None,
    samples: int = DEFAULT_SAMPLES,
    atol: float | None = DEFAULT_ATOL,
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
    expected = reference_outputs(reference_model, inputs, samples=samples, seed=seed, atol=atol)
    expected.measure_floors = lambda: rounding_floors(reference_model, expected.inputs, expected.outputs, atol)
    return check_file(expected, candidate_path, atol=atol, rtol=rtol, training_check=training_check, allow_code=allow_code)


def check_file(expected: ReferenceOutputs, candidate_path: str, *, atol: float | None = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL,
               training_check: bool = False, allow_code: bool = False) -> VerifyReport:
    """``verify_model``'s second half: load the file with plain Keras and compare it with ``expected``.

    Only the reference's outputs are needed here, so a caller may free the reference model (and
    its weights) first: one model is alive at a time.
    """
    try:
        candidate = load_plain(candidate_path, allow_code=allow_code)
    except Exception as error:  # any failure to load is a failed verification, not a crash
        return VerifyReport(False, [], 0, atol, rtol, problem=f"the written file does not load with plain Keras: {one_line(error)}")
    _check_same_inputs(expected.input_shapes, candidate)
    inputs, names, floors = expected.inputs, expected.names, expected.floors
    if expected.problem:
        return VerifyReport(False, [], inputs[0].shape[0], atol, rtol, problem=expected.problem, notes=expected.notes)
    produced = run(candidate, inputs)
    # Whatever acts in training mode (a BN on batch statistics, an active Dropout) shows on every
    # sample: the training-mode run takes one forward call's worth (one image of a large input).
    first = call_size(inputs)
    trained = run(candidate, [x[:first] for x in inputs], training=True) if training_check else None
    del candidate  # measuring the floors may need the reference rebuilt: one model at a time

    def checks_for(floors: list[float] | None) -> list[OutputCheck]:
        checks = compare(expected.outputs, produced, names, mode="inference", rtol=rtol, floors=floors)
        if trained is not None:
            checks += compare([y[:first] for y in expected.outputs], trained, names, mode="training", rtol=rtol,
                              floors=floors)
        return checks

    checks = with_floors(checks_for, floors, expected.measure_floors)
    return VerifyReport.of(checks, inputs[0].shape[0], atol, rtol, notes=expected.notes)


def _check_same_inputs(ours: list[tuple], candidate) -> None:
    theirs = [tuple(t.shape[1:]) for t in candidate.inputs]
    if ours != theirs:
        raise SurgeonError(f"the models take different inputs (reference {ours}, candidate {theirs}); they are not comparable")

