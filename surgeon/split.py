"""``split``: write a frozen base and a trainable top such that top(base(x)) == model(x).

The pure pass ``surgeon.passes.split`` in the one rewrite flow (``rewrite.write_verified``) with
two outputs: both halves are written to temporary files, reloaded with plain Keras, composed and
compared with the original, then kept together (or neither).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os

import numpy as np

from surgeon.errors import SurgeonError, one_line
from surgeon.io.keras_model import build_keras_model, load_plain, spec_from_keras_model
from surgeon.passes.split import SplitReport, split
from surgeon.rewrite import VerifyOptions, write_verified
from surgeon.spec import ModelSpec, io_refs
from surgeon.verify import (
    VerifyReport, compare, given_floors, informative_inputs, load_inputs, output_names, rounding_floors, run, with_floors,
)


@dataclasses.dataclass
class SplitResult:
    input: str
    base: str | None  # None when verification failed and nothing was written
    top: str | None
    report: SplitReport
    verification: VerifyReport | None
    notes: list[str] = dataclasses.field(default_factory=list)  # from the reader, and the verification choices

    @property
    def passed(self) -> bool:
        return self.verification is None or self.verification.passed

    def to_json(self) -> dict:
        return {
            "input": self.input, "base": self.base, "top": self.top, "passed": self.passed,
            **self.report.to_json(),
            "verification": self.verification.to_json() if self.verification else None,
            "notes": self.notes,
        }


def default_outputs(input_path: str, directory: str | None = None, base: str | None = None, top: str | None = None) -> tuple[str, str]:
    """DIR/<stem>_base.<ext> and DIR/<stem>_top.<ext> (DIR defaults to the input's directory)."""
    folder = directory if directory is not None else os.path.dirname(input_path) or "."
    stem, extension = os.path.splitext(os.path.basename(input_path))
    extension = extension if extension.lower() in (".keras", ".h5") else ".keras"
    return (base or os.path.join(folder, f"{stem}_base{extension}"), top or os.path.join(folder, f"{stem}_top{extension}"))


def split_file(
    input_path: str,
    *,
    at: str | None = None,
    base_path: str | None = None,
    top_path: str | None = None,
    directory: str | None = None,
    force: bool = False,
    fold_bn: bool = False,
    verify: VerifyOptions | None = None,
    allow_code: bool = False,
) -> SplitResult:
    """Split a model file into base and top files, verified on the written files.

    Example:
        >>> result = split_file("fixtures/nested.keras", directory="/tmp")
        >>> result.base, result.top, result.passed
        ('/tmp/nested_base.keras', '/tmp/nested_top.keras', True)
    """
    with output_directory(directory) as created:
        result = _split_file(input_path, at, base_path, top_path, directory, force, fold_bn, verify, allow_code)
        if result.base is None and created and not os.listdir(created):
            os.rmdir(created)  # nothing written: leave no trace, not even the folder
        return result


@contextlib.contextmanager
def output_directory(directory: str | None):
    """Create ``directory`` if only it is missing (its parent exists), as ``mkdir`` would; yield it
    if it was created here, and remove it again if an error leaves it empty."""
    if directory is None or os.path.isdir(directory) or not os.path.isdir(os.path.dirname(os.path.abspath(directory))):
        yield None  # exists, or not asked for, or a missing parent: check_output_path says so
        return
    os.mkdir(directory)
    try:
        yield directory
    except BaseException:
        if os.path.isdir(directory) and not os.listdir(directory):
            os.rmdir(directory)
        raise


def _split_file(input_path, at, base_path, top_path, directory, force, fold_bn, verify, allow_code) -> SplitResult:
    base_path, top_path = default_outputs(input_path, directory, base_path, top_path)
    if os.path.abspath(base_path) == os.path.abspath(top_path):
        raise SurgeonError(f"the base and the top would both be written to '{base_path}'; give different --base-out and --top-out")
    # verify_split always runs the base in training mode too: there is no training check to choose.
    verify = dataclasses.replace(verify or VerifyOptions(), training_check=True)

    def cut(original: ModelSpec) -> tuple[list[ModelSpec], SplitReport]:
        base, top, report = split(original, at, fold_bn=fold_bn)
        return [base, top], report

    def check(original: ModelSpec, report: SplitReport, paths: list[str], options: VerifyOptions) -> VerifyReport:
        return verify_split(original, paths[0], paths[1], report, options, allow_code=allow_code)

    done = write_verified(input_path, [base_path, top_path], cut, check, force=force, verify=verify, allow_code=allow_code)
    base_written, top_written = done.outputs or (None, None)
    return SplitResult(input_path, base_written, top_written, done.report, done.verification, done.notes)


def verify_split(original: ModelSpec, base_path: str, top_path: str, report: SplitReport, options: VerifyOptions,
                 *, allow_code: bool = False) -> VerifyReport:
    """Reload both files with plain Keras; top(base(x)) must equal the original's output.

    Also checks that the base is mode-independent: its features in training mode equal those in
    inference mode, which is what makes cached features exact for fine-tuning.
    """
    reference = build_keras_model(original, allow_code=allow_code, never_saved=True)
    try:
        base = load_plain(base_path, allow_code=allow_code)
        top = load_plain(top_path, allow_code=allow_code)
    except Exception as error:  # a written file Keras cannot load is a failed verification
        return VerifyReport(False, [], 0, options.atol, options.rtol, problem=f"a written file does not load with plain Keras: {one_line(error)}")
    given = load_inputs(options.inputs, reference) if options.inputs else None
    inputs, expected, floors, notes, problem = informative_inputs(reference, given, options.samples, 0, options.atol, output_names(reference))
    if problem:
        return VerifyReport(False, [], inputs[0].shape[0], options.atol, options.rtol, problem=problem, notes=notes)
    input_names = [ref[0] for ref in io_refs(original.config["config"]["input_layers"])]
    checks = compose_checks(reference, base, top, inputs, input_names, report, expected=expected, floors=floors,
                            atol=options.atol, rtol=options.rtol)
    return VerifyReport.of(checks, inputs[0].shape[0], options.atol, options.rtol, notes=notes)


def compose_checks(reference, base, top, inputs: list[np.ndarray], input_names: list[str], report: SplitReport,
                   *, expected: list[np.ndarray], floors: list[float] | None, atol: float | None, rtol: float):
    """top(base(x)) against reference(x) (``expected``) in inference mode, and the base's features across modes."""
    by_name = dict(zip(input_names, inputs))
    base_inputs = [by_name[name] for name in report.base_inputs]
    features = run(base, base_inputs)
    top_inputs = features + [by_name[name] for name in report.passthrough_inputs]
    composed = run(top, top_inputs)
    checks = with_floors(lambda known: compare(expected, composed, output_names(reference), mode="inference", rtol=rtol, floors=known),
                         floors, lambda: rounding_floors(reference, inputs, expected, atol))
    feature_names = [f"features:{t.name}" for t in report.cut]
    trained = run(base, base_inputs, training=True)
    checks += with_floors(lambda known: compare(features, trained, feature_names, mode="training", rtol=rtol, floors=known),
                          given_floors(atol, len(features)), lambda: rounding_floors(base, base_inputs, features, atol))
    return checks


def split_model(model, at: str | None = None, *, fold_bn: bool = False):
    """In-memory split: ``(base_model, top_model, report)`` from a ``keras.Model``.

    Example:
        >>> base, top, report = split_model(model, at="gap")
        >>> np.allclose(top(base(x)), model(x))
        True
    """
    spec = spec_from_keras_model(model)
    base, top, report = split(spec, at, fold_bn=fold_bn)
    return build_keras_model(base), build_keras_model(top, compile=True), report


