"""``surgeon prepare MODEL -o OUT``: the one-shot preprocessing step before a fine-tuning job."""

from __future__ import annotations

from surgeon.commands.freeze import rewrite_command

prepare = rewrite_command("prepare_file", "Preparing, verifying and fine-tune-checking with Keras...", """Freeze, fold frozen BatchNormalization, drop frozen Dropout/noise, recompile, verify.

    The same selection and compile options as `surgeon freeze`, then: BatchNormalization layers in
    the frozen part are folded into their neighbours (BNs in the trainable part stay, frozen unless
    --train-bn), Dropout and noise layers in the frozen part are removed (they are the identity at
    inference), and the model is compiled afresh. The written file is compared with the input in
    inference mode and fine-tuned for a few seeded steps with plain Keras (see `surgeon freeze`).
    Exit 1 and no output when a check fails.

    Example: surgeon prepare resnet50.h5 -o ready.h5 --until conv4_block6_out --optimizer adam --lr 1e-4 --json
    """)
