"""Read -> rewrite -> write atomically -> verify the written file: the path every command takes.

``verify_files`` (``surgeon verify``) compares two files with the same resolved options.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

from surgeon.io import read_model, write_model
from surgeon.io.keras_model import build_keras_model, check_code_layers
from surgeon.io.loading import refuse_code_in_file
from surgeon.io.output import check_output_path, pending_outputs
from surgeon.io.custom_classes import custom_layers
from surgeon.layer_kinds import mode_dependent_layers
from surgeon.passes import Pass, PassReport
from surgeon.spec import ModelSpec
from surgeon.verify import (
    DEFAULT_ATOL, DEFAULT_RTOL, DEFAULT_SAMPLES, MIXED_PRECISION_RTOL, ReferenceOutputs, VerifyReport, check_file,
    load_inputs, reference_outputs, rounding_floors, verify_model,
)


# Input values per verification run when --samples is not given: two 224x224 RGB images. A
# rewrite error (a fold on a wrong axis, say) shows at every position of every sample; more samples
# of a large input add time, not power. Small inputs keep DEFAULT_SAMPLES.
SAMPLE_BUDGET = 2 * 224 * 224 * 3
MIN_SAMPLES = 2
LOW_PRECISION = ("float16", "bfloat16")


@dataclasses.dataclass
class VerifyOptions:
    """How a written file is checked. ``None`` means "chosen from the model" (see ``resolve``)."""

    enabled: bool = True
    samples: int | None = None  # DEFAULT_SAMPLES, fewer for large inputs
    atol: float | None = DEFAULT_ATOL  # None: measured from float32 rounding (verify.rounding_floors)
    rtol: float | None = None  # DEFAULT_RTOL, MIXED_PRECISION_RTOL when layers compute in float16
    training_check: bool | None = None  # when nothing that acts in training mode is left
    inputs: str | None = None  # an .npz of user inputs

    def resolve(self, original: ModelSpec, *rewritten: ModelSpec) -> tuple["VerifyOptions", list[str]]:
        """Fill in what was left to the model; return the options and notes saying what and why.

        The training-mode check is chosen from the rewritten specs (the original's when none).
        """
        options, notes = dataclasses.replace(self), []
        if options.samples is None:
            options.samples = verification_samples(original)
            if options.samples < DEFAULT_SAMPLES and options.enabled and not options.inputs:
                notes.append(f"verified on {options.samples} samples: the inputs are large (--samples overrides)")
        if options.rtol is None:
            low = low_precision_layers(original)
            options.rtol = MIXED_PRECISION_RTOL if low else DEFAULT_RTOL
            if low and options.enabled:
                notes.append(f"{len(low)} layer(s) compute in float16/bfloat16: verified with rtol={options.rtol:g} "
                             "(the error reported is what mixed precision leaves; --rtol overrides)")
        if options.training_check is None:
            left = [path for spec in (rewritten or (original,)) for path in mode_dependent_layers(spec)]
            # A class beyond Keras' own may hold BN or Dropout inside, which surgeon cannot see.
            opaque = [layer.path for spec in (rewritten or (original,)) for layer in custom_layers(spec.config)]
            options.training_check = not left and not opaque
            if options.enabled and left:
                shown = ", ".join(left[:4]) + (", ..." if len(left) > 4 else "")
                notes.append(f"training-mode check skipped: {len(left)} layer(s) still act in training mode ({shown})")
            elif options.enabled and opaque:
                shown = ", ".join(opaque[:4]) + (", ..." if len(opaque) > 4 else "")
                notes.append(f"training-mode check skipped: {len(opaque)} layer(s) of classes beyond Keras' own may act "
                             f"differently in training ({shown})")
        return options, notes


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


@dataclasses.dataclass
class RewriteResult:
    input: str
    output: str | None  # None when verification failed and nothing was written
    passes: list[PassReport]
    verification: VerifyReport | None
    notes: list[str]
    checked: Any = None  # what after_write returned (e.g. a fine-tune report), if anything

    @property
    def passed(self) -> bool:
        return (self.verification is None or self.verification.passed) and bool(getattr(self.checked, "passed", True))

    def to_json(self) -> dict:
        return {
            "input": self.input,
            "output": self.output,
            "passed": self.passed,
            "passes": [p.to_json() for p in self.passes],
            "verification": self.verification.to_json() if self.verification else None,
            "notes": self.notes,
            "checked": self.checked.to_json() if hasattr(self.checked, "to_json") else self.checked,
        }


def apply_passes(spec: ModelSpec, passes: Sequence[Pass]) -> tuple[ModelSpec, list[PassReport]]:
    reports = []
    for rewrite in passes:
        spec, report = rewrite(spec)
        reports.append(report)
    return spec, reports


def rewrite_file(
    input_path: str,
    output_path: str,
    passes: Sequence[Pass],
    *,
    force: bool = False,
    verify: VerifyOptions | None = None,
    allow_code: bool = False,
    after_write: Callable[[str, ModelSpec, VerifyOptions], Any] | None = None,
) -> RewriteResult:
    """Rewrite ``input_path`` into ``output_path`` with ``passes`` and verify the file that was written.

    The output appears only if verification passed (or was disabled); the input is never
    opened for writing. ``after_write(temporary_path, spec, options)`` runs extra checks (e.g. a
    fine-tune proof) on the written file, with the resolved verification options, before it is
    renamed into place; it raises, or returns None or a report: a report whose ``passed`` is false
    fails the rewrite like a failed verification (nothing written; the report is
    ``RewriteResult.checked``).
    """

    def run_passes(original: ModelSpec) -> tuple[list[ModelSpec], list[PassReport]]:
        rewritten, reports = apply_passes(original, passes)
        return [rewritten], reports

    def check(original: ModelSpec, reports, paths: list[str], options: VerifyOptions) -> VerifyReport:
        return verify_against(original, paths[0], options, allow_code=allow_code)

    def after(paths: list[str], specs: list[ModelSpec], options: VerifyOptions):
        return after_write(paths[0], specs[0], options)

    done = write_verified(input_path, [output_path], run_passes, check, force=force, verify=verify, allow_code=allow_code,
                          after_write=after if after_write is not None else None)
    output = done.outputs[0] if done.outputs else None
    return RewriteResult(input_path, output, done.report, done.verification, done.notes, done.checked)


@dataclasses.dataclass
class Written:
    """What ``write_verified`` did: the outputs kept (None when a check failed and none were)."""

    outputs: list[str] | None
    report: Any  # what the rewrite reported (pass reports, a split report)
    verification: VerifyReport | None
    notes: list[str]  # from the reader and the passes, then the verification choices made for this model
    checked: Any = None  # what after_write returned, if anything


def write_verified(
    input_path: str,
    output_paths: Sequence[str],
    rewrite: Callable[[ModelSpec], tuple[list[ModelSpec], Any]],
    check: Callable[[ModelSpec, Any, list[str], VerifyOptions], VerifyReport],
    *,
    force: bool = False,
    verify: VerifyOptions | None = None,
    allow_code: bool = False,
    after_write: Callable[[list[str], list[ModelSpec], VerifyOptions], Any] | None = None,
) -> Written:
    """The one rewrite flow every command takes, for one output or several written together.

    1. refuse outputs that exist (unless ``force``) or that would overwrite the input;
    2. read the input; refuse code it holds (Lambda layers) unless ``allow_code``;
    3. ``rewrite(original) -> (one spec per output, report)``;
    4. resolve the verification options from the model (the notes say what was chosen and why);
    5. write every output to a temporary file beside its target;
    6. ``check(original, report, temporary paths, options)`` on the written files, then
       ``after_write(temporary paths, specs, options)``: each can fail the rewrite;
    7. rename every output into place, or none.
    """
    verify = verify or VerifyOptions()
    for path in output_paths:
        check_output_path(path, force=force, inputs=(input_path,))
    original = read_model(input_path)
    # Refused even on the TensorFlow-free path (--no-verify to .h5), which would never run it:
    # the file we write must not carry code into the user's fine-tuning job unannounced.
    check_code_layers(original, allow_code)
    specs, report = rewrite(original)
    options, choices = verify.resolve(original, *specs)
    notes = list(dict.fromkeys(note for spec in specs for note in spec.notes)) + choices
    verification = None
    with pending_outputs(list(output_paths)) as pending:
        temporaries = [pending.path(path) for path in output_paths]
        for spec, temporary in zip(specs, temporaries):
            fallback = write_model(spec, temporary, allow_code=allow_code)
            if fallback:
                notes.append(fallback)
            # The file holds this spec's weights now; the checks need the original and the files,
            # so the arrays only the rewrite made are dropped (after_write reads the specs' config
            # and source, never their weights). With no pass, a spec *is* the original.
            if spec is not original:
                spec.weights = {}
        if options.enabled:
            verification = check(original, report, temporaries, options)
            if not verification.passed:
                return Written(None, report, verification, notes)
        checked = after_write(temporaries, specs, options) if after_write is not None else None
        if not getattr(checked, "passed", True):
            return Written(None, report, verification, notes, checked)
        pending.commit()
    return Written(list(output_paths), report, verification, notes, checked)


def verify_against(original: ModelSpec, candidate_path: str, options: VerifyOptions, *, allow_code: bool = False) -> VerifyReport:
    """Verify the written file against ``original``, holding about one copy of the weights at a time.

    Consumes ``original.weights``: once the reference model is built they live in its variables,
    and once its outputs are computed the model is dropped too, before the written file is
    loaded. (Peak RSS was 1.8x a plain load with both models, both specs and the rewritten arrays
    alive at once; issue 15.)
    """
    reference = build_keras_model(original, allow_code=allow_code, never_saved=True)
    original.weights = {}
    inputs = load_inputs(options.inputs, reference) if options.inputs else None
    expected = reference_outputs(reference, inputs, samples=options.samples, atol=options.atol)
    del reference
    release_models()
    if original.source.path:
        expected.measure_floors = lambda: floors_from_file(original.source.path, expected, allow_code=allow_code)
    return check_file(expected, candidate_path, atol=options.atol, rtol=options.rtol,
                      training_check=options.training_check, allow_code=allow_code)


def floors_from_file(path: str, expected: ReferenceOutputs, *, allow_code: bool = False) -> list[float]:
    """The reference's rounding floors, rebuilt from its file: ``verify_against`` freed the model,
    and a check needs them only when it fails on the relative tolerance alone (rare: a model that
    amplifies rounding, or a wrong rewrite)."""
    release_models()
    reference = build_keras_model(read_model(path), allow_code=allow_code, never_saved=True)
    return rounding_floors(reference, expected.inputs, expected.outputs)


def release_models() -> None:
    """Let TensorFlow free the variables of models no longer referenced (Keras keeps none globally)."""
    import gc

    gc.collect()


def verify_files(
    reference_path: str,
    candidate_path: str,
    *,
    inputs: str | None = None,
    samples: int | None = None,
    atol: float | None = DEFAULT_ATOL,
    rtol: float | None = None,
    training_check: bool = False,
    allow_code: bool = False,
) -> VerifyReport:
    """Compare two model files (``surgeon verify``).

    The reference is read by surgeon's reader (so Keras 2 files and Keras 3 files that Keras
    cannot reload still serve as references); the candidate is loaded by plain Keras.
    ``samples``/``rtol`` left None are chosen from the reference (``VerifyOptions.resolve``).

    Example:
        >>> report = verify_files("model.h5", "folded.h5")
        >>> report.passed, report.max_rel
        (True, 3.1e-07)
    """
    # The candidate is checked like any input (damaged file, code) before Keras sees it: bad
    # input is exit 2, only a loadable model that differs is a failed verification.
    refuse_code_in_file(candidate_path, allow_code)
    original = read_model(reference_path)
    options, _ = VerifyOptions(samples=samples, atol=atol, rtol=rtol, training_check=training_check).resolve(original)
    reference = build_keras_model(original, allow_code=allow_code, never_saved=True)
    data = load_inputs(inputs, reference) if inputs else None
    return verify_model(reference, candidate_path, inputs=data, samples=options.samples, atol=atol, rtol=options.rtol,
                        training_check=training_check, allow_code=allow_code)
