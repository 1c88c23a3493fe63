"""Library entry points of ``surgeon freeze`` and ``surgeon prepare``: files and in-memory models.

Both are pipelines of the passes named in ``passes.registry`` (data, not new code):

- ``freeze``:  freeze -> recompile
- ``prepare``: freeze -> fold_bn (frozen BNs) -> strip_dropout (frozen parts) -> freeze_bn -> recompile

The selection runs first, so that "the frozen part" that fold_bn and strip_dropout act on is the
one the new flags define. Every written file is verified against the input (inference outputs)
and then fine-tuned briefly from a fresh plain-Keras load (``surgeon.finetune_check``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

from surgeon.finetune_check import fine_tune_checker
from surgeon.io.keras_model import build_keras_model, spec_from_keras_model
from surgeon.passes import Pass, PassReport
from surgeon.passes.freeze import Selection
from surgeon.passes.recompile import CompileOptions
from surgeon.passes.registry import PASSES
from surgeon.rewrite import RewriteResult, VerifyOptions, apply_passes, rewrite_file

FREEZE_PIPELINE = ("freeze", "recompile")
# The BN rule (--keep-bn-frozen) runs after fold_bn: BNs frozen only by that rule belong to the
# trainable part, and stay BNs.
PREPARE_PIPELINE = ("freeze", "fold_bn", "strip_dropout", "freeze_bn", "recompile")


def pipeline(names: Sequence[str], selection: Selection | None = None, compile: CompileOptions | None = None) -> list[Pass]:
    """The registered passes ``names``, with the selection and compile options bound."""
    selection = selection or Selection()
    if "freeze_bn" in names:
        keep_bn_frozen, selection = selection.keep_bn_frozen, dataclasses.replace(selection, keep_bn_frozen=False)
        names = [name for name in names if name != "freeze_bn" or keep_bn_frozen]
    arguments = {"freeze": {"selection": selection}, "recompile": {"options": compile or CompileOptions()},
                 "strip_dropout": {"only_frozen": True}}
    return [functools.partial(PASSES[name], **arguments.get(name, {})) for name in names]


def freeze_file(input_path: str, output_path: str, *, selection: Selection | None = None, compile: CompileOptions | None = None,
                force: bool = False, verify: VerifyOptions | None = None, fine_tune: bool = True, allow_code: bool = False) -> RewriteResult:
    """Bake ``selection``'s flags into a model file with a matching compile state; verify; fine-tune-check.

    Example:
        >>> result = freeze_file("model.h5", "frozen.h5", selection=Selection(until="block4_pool", unfreeze=("block5_*",)))
        >>> result.passed, result.passes[0].after
        (True, ParamCounts(trainable=7079424, non_trainable=7635264))
    """
    return _run(FREEZE_PIPELINE, input_path, output_path, selection, compile, force, verify, fine_tune, allow_code)


def prepare_file(input_path: str, output_path: str, *, selection: Selection | None = None, compile: CompileOptions | None = None,
                 force: bool = False, verify: VerifyOptions | None = None, fine_tune: bool = True, allow_code: bool = False) -> RewriteResult:
    """``freeze_file`` plus folding frozen BatchNormalization and removing frozen Dropout/noise.

    Example:
        >>> result = prepare_file("fixtures/nested.h5", "prepared.h5")
        >>> result.passed, result.checked.checks["frozen_mode_independent"]
        (True, True)
    """
    return _run(PREPARE_PIPELINE, input_path, output_path, selection, compile, force, verify, fine_tune, allow_code)


def _run(names, input_path, output_path, selection, compile, force, verify, fine_tune, allow_code) -> RewriteResult:
    options = verify or VerifyOptions()
    passes = pipeline(names, selection, compile)
    if not (fine_tune and options.enabled):
        return rewrite_file(input_path, output_path, passes, force=force, verify=options, allow_code=allow_code)
    # Started first: its TensorFlow start-up overlaps the rewrite and the verification.
    with fine_tune_checker(allow_code=allow_code) as check:
        return rewrite_file(input_path, output_path, passes, force=force, verify=options, allow_code=allow_code,
                            after_write=lambda path, spec, options: check(path))


def freeze_model(model, selection: Selection | None = None, compile: CompileOptions | None = None):
    """``(keras.Model, [PassReport])`` for an in-memory model: flags baked in, compiled afresh if it was."""
    return _run_model(FREEZE_PIPELINE, model, selection, compile)


def prepare_model(model, selection: Selection | None = None, compile: CompileOptions | None = None):
    """``(keras.Model, [PassReport])``: ``freeze_model`` plus frozen BN folded and frozen Dropout removed.

    Example:
        >>> prepared, reports = prepare_model(model, Selection(until="base"), CompileOptions("adam", 1e-4, "categorical_crossentropy"))
        >>> prepared.get_layer("base").trainable
        False
    """
    return _run_model(PREPARE_PIPELINE, model, selection, compile)


def _run_model(names, model, selection, compile) -> tuple[object, list[PassReport]]:
    spec, reports = apply_passes(spec_from_keras_model(model), pipeline(names, selection, compile))
    return build_keras_model(spec, compile=True), reports


__all__ = ["freeze_file", "prepare_file", "freeze_model", "prepare_model", "pipeline", "Selection", "CompileOptions"]
