"""Library entry points of ``surgeon fold-bn``: on files, and on in-memory ``keras.Model`` objects.

TensorFlow is imported only where a Keras model is built: ``fold_bn_file`` from ``.h5`` to ``.h5``
with verification off never imports it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from surgeon.passes import PassReport
from surgeon.passes.fold_bn import fold_bn, mode_dependent_layers
from surgeon.rewrite import RewriteResult, VerifyOptions, rewrite_file
from surgeon.spec import ModelSpec
from surgeon.verify import DEFAULT_RTOL, DEFAULT_SAMPLES, MIXED_PRECISION_RTOL

LOW_PRECISION = ("float16", "bfloat16")
# Input values per verification run when --samples is not given: two 224x224 RGB images. A fold
# error is per channel, so it shows at every position of every sample; more samples of a large
# input add time (three forward passes each), not power. Small inputs keep DEFAULT_SAMPLES.
SAMPLE_BUDGET = 2 * 224 * 224 * 3
MIN_SAMPLES = 2


def fold_bn_file(
    input_path: str,
    output_path: str,
    *,
    fold_all: bool = False,
    force: bool = False,
    verify: VerifyOptions | None = None,
    allow_code: bool = False,
) -> RewriteResult:
    """Fold the BatchNormalization layers of a model file and write the verified result.

    Verification reloads the written file with plain Keras and compares it with the original in
    inference mode; and, when no BN, Dropout or noise layer is left that acts in training mode,
    also runs the folded model with ``training=True`` against the original's inference output
    (a folded model must not change with the mode). ``verify.training_check`` is decided here.

    ``verify.rtol=None`` (the default) means DEFAULT_RTOL, or MIXED_PRECISION_RTOL when layers
    compute in float16/bfloat16; ``verify.samples=None`` (the default) means DEFAULT_SAMPLES, or
    fewer (at least MIN_SAMPLES) for inputs larger than SAMPLE_BUDGET values in all. The notes say
    which were used.

    Example:
        >>> result = fold_bn_file("fixtures/convbn.h5", "folded.h5")
        >>> result.passed, result.verification.max_rel < 1e-5
        (True, True)
    """
    options = dataclasses.replace(verify or VerifyOptions(rtol=None, samples=None))
    notes: list[str] = []

    def fold_and_choose_checks(spec: ModelSpec) -> tuple[ModelSpec, PassReport]:
        # rewrite_file runs the passes before it verifies: what the model holds, and what is left
        # after the pass, decide how the written file is checked.
        folded, report = fold_bn(spec, fold_all=fold_all)
        notes.extend(_choose_checks(spec, folded, options))
        return folded, report

    result = rewrite_file(input_path, output_path, [fold_and_choose_checks], force=force, verify=options, allow_code=allow_code)
    result.notes = list(result.notes) + notes
    return result


def _choose_checks(original: ModelSpec, folded: ModelSpec, options: VerifyOptions) -> list[str]:
    """Fill in samples, rtol and training_check; return notes that say what was chosen and why."""
    notes = []
    if options.samples is None:
        options.samples = verification_samples(original)
        if options.samples < DEFAULT_SAMPLES and options.enabled and not options.inputs:
            notes.append(f"verified on {options.samples} samples: the inputs are large (--samples overrides)")
    if options.rtol is None:
        low = low_precision_layers(original)
        options.rtol = MIXED_PRECISION_RTOL if low else DEFAULT_RTOL
        if low and options.enabled:
            notes.append(f"{len(low)} layer(s) compute in float16/bfloat16: verified with rtol={options.rtol:g} "
                         "(the error reported below is what mixed precision leaves; --rtol overrides)")
    left = mode_dependent_layers(folded)
    options.training_check = not left
    if options.enabled and left:
        shown = ", ".join(left[:4]) + (", ..." if len(left) > 4 else "")
        notes.append(f"training-mode check skipped: {len(left)} layer(s) still act in training mode ({shown})")
    elif options.enabled:
        notes.append("training-mode check run: no BatchNormalization, Dropout or noise layer is left")
    return notes


def verification_samples(spec: ModelSpec) -> int:
    """DEFAULT_SAMPLES, or as many samples as fit SAMPLE_BUDGET input values (at least MIN_SAMPLES)."""
    per_sample = 0
    for path, layer in spec.layers():
        if "/" in path or layer.get("class_name") != "InputLayer":
            continue
        shape = layer["config"].get("batch_shape") or layer["config"].get("batch_input_shape") or [None]
        # surgeon.verify.seeded_inputs makes unknown sizes 32.
        per_sample += int(np.prod([32 if d is None else d for d in shape[1:]], dtype=np.int64))
    if per_sample == 0:
        return DEFAULT_SAMPLES
    return max(MIN_SAMPLES, min(DEFAULT_SAMPLES, SAMPLE_BUDGET // per_sample))


def low_precision_layers(spec: ModelSpec) -> list[str]:
    """Layers whose dtype policy computes in float16/bfloat16 (``mixed_float16``, ``float16``, ...)."""
    found = []
    for path, layer in spec.layers():
        policy = layer.get("config", {}).get("dtype")
        name = policy.get("config", {}).get("name") if isinstance(policy, dict) else policy
        if isinstance(name, str) and name.endswith(LOW_PRECISION):
            found.append(path)
    return found


def fold_bn_model(model, fold_all: bool = False):
    """Return ``(folded keras.Model, PassReport)`` for an in-memory functional/sequential model.

    A compiled model comes back compiled with the same loss/metrics and a fresh optimizer of the
    same config.

    Example:
        >>> folded, report = fold_bn_model(keras.applications.MobileNetV2(weights=None), fold_all=True)
        >>> any(isinstance(l, keras.layers.BatchNormalization) for l in folded.layers)
        False
    """
    from surgeon.io.keras_model import build_keras_model, spec_from_keras_model

    spec, report = fold_bn(spec_from_keras_model(model), fold_all=fold_all)
    return build_keras_model(spec, compile=True), report


__all__ = ["fold_bn_file", "fold_bn_model"]
