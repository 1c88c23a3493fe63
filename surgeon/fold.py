"""Library entry points of ``surgeon fold-bn``: on files, and on in-memory ``keras.Model`` objects.

TensorFlow is imported only where a Keras model is built: ``fold_bn_file`` from ``.h5`` to ``.h5``
with verification off never imports it.
"""

from __future__ import annotations

from surgeon.io.keras_model import build_keras_model, spec_from_keras_model
from surgeon.passes import PassReport
from surgeon.passes.fold_bn import fold_bn
from surgeon.rewrite import RewriteResult, VerifyOptions, rewrite_file
from surgeon.spec import ModelSpec


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
    (a folded model must not change with the mode).

    Options left ``None`` are chosen from the model (``VerifyOptions.resolve``): fewer samples for
    large inputs, a float16 tolerance for mixed precision; the notes say which were used.

    Example:
        >>> result = fold_bn_file("fixtures/convbn.h5", "folded.h5")
        >>> result.passed, result.verification.max_rel < 1e-5
        (True, True)
    """
    def fold(spec: ModelSpec) -> tuple[ModelSpec, PassReport]:
        return fold_bn(spec, fold_all=fold_all)

    return rewrite_file(input_path, output_path, [fold], force=force, verify=verify, allow_code=allow_code)


def fold_bn_model(model, fold_all: bool = False):
    """Return ``(folded keras.Model, PassReport)`` for an in-memory functional/sequential model.

    A compiled model comes back compiled with the same loss/metrics and a fresh optimizer of the
    same config.

    Example:
        >>> folded, report = fold_bn_model(keras.applications.MobileNetV2(weights=None), fold_all=True)
        >>> any(isinstance(l, keras.layers.BatchNormalization) for l in folded.layers)
        False
    """
    spec, report = fold_bn(spec_from_keras_model(model), fold_all=fold_all)
    return build_keras_model(spec, compile=True), report


__all__ = ["fold_bn_file", "fold_bn_model"]
