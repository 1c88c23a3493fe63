"""``surgeon prepare MODEL -o OUT``: the one-shot preprocessing step before a fine-tuning job."""

from __future__ import annotations

from surgeon.commands.common import AllowCode, Atol, Force, Inputs, Json, ModelPath, NoVerify, OutputPath, Rtol, Samples, command
from surgeon.commands.freeze import (
    FreezeAll, FreezeGlob, KeepBnFrozen, LearningRate, Loss, Metrics, Optimizer, UnfreezeGlob, Until, run_rewrite, compile_from,
    selection_from,
)
from surgeon.verify import DEFAULT_ATOL, DEFAULT_RTOL, DEFAULT_SAMPLES


@command
def prepare(
    model: ModelPath,
    output: OutputPath,
    until: Until = None,
    freeze_globs: FreezeGlob = None,
    unfreeze_globs: UnfreezeGlob = None,
    freeze_all: FreezeAll = False,
    keep_bn_frozen: KeepBnFrozen = True,
    optimizer: Optimizer = None,
    learning_rate: LearningRate = None,
    loss: Loss = None,
    metrics: Metrics = None,
    no_verify: NoVerify = False,
    samples: Samples = DEFAULT_SAMPLES,
    atol: Atol = DEFAULT_ATOL,
    rtol: Rtol = DEFAULT_RTOL,
    inputs: Inputs = None,
    as_json: Json = False,
    force: Force = False,
    allow_code: AllowCode = False,
) -> int:
    """Freeze, fold frozen BatchNormalization, drop frozen Dropout/noise, recompile, verify.

    The same selection and compile options as `surgeon freeze`, then: BatchNormalization layers in
    the frozen part are folded into their neighbours (BNs in the trainable part stay, frozen unless
    --train-bn), Dropout and noise layers in the frozen part are removed (they are the identity at
    inference), and the model is compiled afresh. The written file is compared with the input in
    inference mode and fine-tuned for a few seeded steps with plain Keras (see `surgeon freeze`).
    Exit 1 and no output when a check fails.

    Example: surgeon prepare resnet50.h5 -o ready.h5 --until conv4_block6_out --optimizer adam --lr 1e-4 --json
    """
    from surgeon.prepare import prepare_file

    return run_rewrite(prepare_file, "Preparing, verifying and fine-tune-checking with Keras...", model, output,
                    selection_from(until, freeze_globs, unfreeze_globs, freeze_all, keep_bn_frozen),
                    compile_from(optimizer, learning_rate, loss, metrics), no_verify, samples, atol, rtol, inputs, as_json, force, allow_code)
