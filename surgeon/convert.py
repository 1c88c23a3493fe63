"""``convert``: write the Keras 3 equivalent of a model file, checked against its own Keras.

A Keras 2 file is translated at the door (the ``surgeon/io/keras2`` package). The written file is verified
twice: against surgeon's in-memory reading of the original (as every rewrite is), and - when
``tf_keras`` is installed (``pip install 'surgeon[keras2]'``) - against the original file run by
Keras 2 itself in a separate process, on the same seeded inputs. The second check is the one that
catches a translation mistake; without tf_keras it is skipped, and the report says so.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import tempfile

import numpy as np

from surgeon.child_process import last_error_line, run_python
from surgeon.io.keras_model import load_plain
from surgeon.passes.recompile import recompile
from surgeon.rewrite import RewriteResult, VerifyOptions, rewrite_file
from surgeon.verify import (
    DEFAULT_ATOL, DEFAULT_RTOL, VerifyReport, compare, given_floors, rounding_floors, run, seeded_inputs, with_floors,
)

# Runs in a child process: TF_USE_LEGACY_KERAS=1 makes tf.keras Keras 2 (tf_keras), which cannot
# share a process with Keras 3.
_KERAS2_RUNNER = """
import sys, numpy as np, tf_keras
# tf_keras does not register its own ConvNeXt layers, so its load_model cannot read its own files.
from tf_keras.src.applications import convnext
custom = {"LayerScale": convnext.LayerScale, "StochasticDepth": convnext.StochasticDepth}
if len(sys.argv) > 4:  # an architecture JSON and its weights file
    with open(sys.argv[1]) as handle:
        model = tf_keras.models.model_from_json(handle.read(), custom_objects=custom)
    model.load_weights(sys.argv[4])
else:  # .h5, .keras, SavedModel directory
    model = tf_keras.models.load_model(sys.argv[1], compile=False, custom_objects=custom)
data = np.load(sys.argv[2])
inputs = [data[f"x{i}"] for i in range(len(data.files))]
outputs = model(inputs if len(inputs) > 1 else inputs[0], training=False)
outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
np.savez(sys.argv[3], **{f"y{i}": np.asarray(y) for i, y in enumerate(outputs)})
"""


@dataclasses.dataclass
class OriginalRuntimeCheck:
    """The converted file against the original run by the Keras that wrote it."""

    passed: bool
    skipped: str | None
    report: VerifyReport | None

    def to_json(self) -> dict:
        return {"passed": self.passed, "skipped": self.skipped, "report": self.report.to_json() if self.report else None}


def tf_keras_available() -> bool:
    return importlib.util.find_spec("tf_keras") is not None


def check_against_keras2(original: str, candidate: str, *, samples: int, atol: float | None, rtol: float,
                         allow_code: bool = False, weights: str | None = None) -> OriginalRuntimeCheck:
    """Run ``original`` (with its separate ``weights`` file when it is an architecture JSON) in
    tf_keras and compare with ``candidate`` loaded by plain Keras 3."""
    if not tf_keras_available():
        return OriginalRuntimeCheck(True, "tf_keras is not installed (pip install 'surgeon[keras2]'); "
                                          "checked only that the converted file reloads and matches surgeon's reading", None)
    model = load_plain(candidate, allow_code=allow_code)
    inputs = seeded_inputs(model, samples)
    with tempfile.TemporaryDirectory() as scratch:
        given, produced = os.path.join(scratch, "x.npz"), os.path.join(scratch, "y.npz")
        np.savez(given, **{f"x{i}": x for i, x in enumerate(inputs)})
        done = run_python(["-c", _KERAS2_RUNNER, original, given, produced] + ([weights] if weights else []), {"TF_USE_LEGACY_KERAS": "1"})
        if done.returncode != 0:
            problem = f"tf_keras could not run the original: {last_error_line(done.stderr, done.returncode)}"
            return OriginalRuntimeCheck(False, None, VerifyReport(False, [], samples, atol, rtol, problem=problem))
        expected_file = np.load(produced)
        expected = [expected_file[f"y{i}"] for i in range(len(expected_file.files))]
    names = list(model.output_names)
    produced = run(model, inputs)
    checks = with_floors(lambda floors: compare(expected, produced, names, mode="inference", rtol=rtol, floors=floors),
                         given_floors(atol, len(produced)), lambda: rounding_floors(model, inputs, produced, atol))
    report = VerifyReport.of(checks, samples, atol, rtol)
    return OriginalRuntimeCheck(report.passed, None, report)


def convert_file(
    input_path: str,
    output_path: str,
    *,
    force: bool = False,
    verify: VerifyOptions | None = None,
    allow_code: bool = False,
) -> RewriteResult:
    """Write the Keras 3 equivalent of ``input_path`` (Keras 2 or 3: .h5, .keras, a SavedModel
    directory, an architecture .json with its weights) to ``output_path``.

    Example:
        >>> result = convert_file("old_keras2_model.h5", "model.keras")
        >>> result.passed, result.checked.skipped
        (True, None)
    """
    def against_original(temporary: str, spec, options: VerifyOptions) -> OriginalRuntimeCheck | None:
        # The options the main check used (samples and rtol as resolved for this model).
        if spec.source.dialect != "keras2" or not options.enabled:
            return None
        return check_against_keras2(input_path, temporary, samples=options.samples, atol=options.atol, rtol=options.rtol,
                                    allow_code=allow_code, weights=spec.source.weights_path)

    # recompile with no options keeps the compile config and drops stored optimizer state (Keras 2
    # slots cannot go into a Keras 3 optimizer), saying so in its notes.
    return rewrite_file(input_path, output_path, [recompile], force=force, verify=verify, allow_code=allow_code,
                        after_write=against_original)


__all__ = ["convert_file", "check_against_keras2", "tf_keras_available", "DEFAULT_ATOL", "DEFAULT_RTOL"]
