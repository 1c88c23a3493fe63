"""Read -> rewrite -> write atomically -> verify the written file: the path every command takes."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

from surgeon.io import read_model, write_model
from surgeon.io.keras_model import check_code_layers
from surgeon.io.output import check_output_path, pending_outputs
from surgeon.passes import PassReport
from surgeon.spec import ModelSpec
from surgeon.verify import DEFAULT_ATOL, DEFAULT_RTOL, DEFAULT_SAMPLES, VerifyReport

SpecPass = Callable[[ModelSpec], tuple[ModelSpec, PassReport]]


@dataclasses.dataclass
class VerifyOptions:
    enabled: bool = True
    samples: int = DEFAULT_SAMPLES
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    training_check: bool = False
    inputs: str | None = None  # an .npz of user inputs


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


def apply_passes(spec: ModelSpec, passes: Sequence[SpecPass]) -> tuple[ModelSpec, list[PassReport]]:
    reports = []
    for rewrite in passes:
        spec, report = rewrite(spec)
        reports.append(report)
    return spec, reports


def rewrite_file(
    input_path: str,
    output_path: str,
    passes: Sequence[SpecPass],
    *,
    force: bool = False,
    verify: VerifyOptions | None = None,
    allow_code: bool = False,
    after_write: Callable[[str, ModelSpec], Any] | None = None,
) -> RewriteResult:
    """Rewrite ``input_path`` into ``output_path`` and verify the file that was written.

    The output appears only if verification passed (or was disabled); the input is never
    opened for writing. ``after_write(temporary_path, spec)`` runs extra checks (e.g. a fine-tune
    proof) on the written file before it is renamed into place; it raises, or returns None or a
    report: a report whose ``passed`` is false fails the rewrite like a failed verification
    (nothing written; the report is ``RewriteResult.checked``).
    """
    verify = verify or VerifyOptions()
    check_output_path(output_path, force=force, inputs=(input_path,))
    original = read_model(input_path)
    # Refused even on the TensorFlow-free path (--no-verify to .h5), which would never run it:
    # the file we write must not carry code into the user's fine-tuning job unannounced.
    check_code_layers(original, allow_code)
    rewritten, reports = apply_passes(original, passes)
    verification = None
    with pending_outputs([output_path]) as pending:
        temporary = pending.path(output_path)
        write_model(rewritten, temporary, allow_code=allow_code)
        if verify.enabled:
            verification = verify_against(original, temporary, verify, allow_code=allow_code)
            if not verification.passed:
                return RewriteResult(input_path, None, reports, verification, rewritten.notes)
        checked = after_write(temporary, rewritten) if after_write is not None else None
        if not getattr(checked, "passed", True):
            return RewriteResult(input_path, None, reports, verification, rewritten.notes, checked)
        pending.commit()
    return RewriteResult(input_path, output_path, reports, verification, rewritten.notes, checked)


def verify_against(original: ModelSpec, candidate_path: str, options: VerifyOptions, *, allow_code: bool = False) -> VerifyReport:
    from surgeon.io.keras_model import build_keras_model
    from surgeon.verify import load_inputs, verify_model

    reference = build_keras_model(original, allow_code=allow_code)
    inputs = load_inputs(options.inputs, reference) if options.inputs else None
    return verify_model(
        reference,
        candidate_path,
        inputs=inputs,
        samples=options.samples,
        atol=options.atol,
        rtol=options.rtol,
        training_check=options.training_check,
        allow_code=allow_code,
    )
