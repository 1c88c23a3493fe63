"""``surgeon fold-bn MODEL -o OUT``: remove BatchNormalization layers, write, verify."""

from __future__ import annotations

from typing import Annotated

import typer

from surgeon.commands.common import (
    BakePreprocessing, Imports, EXIT_FAILED, AllowCode, Atol, Force, Inputs, Json, ModelPath, ModelWeights, NoVerify, OutputPath, Rtol, Samples, command, console,
    print_json, verify_options,
)
from surgeon.verify import DEFAULT_ATOL


@command
def fold_bn(
    model: ModelPath,
    output: OutputPath,
    fold_all: Annotated[bool, typer.Option("--all", help="Also fold trainable BatchNormalization layers (for deployment; changes what fine-tuning does).")] = False,
    no_verify: NoVerify = False,
    samples: Samples = None,
    atol: Atol = DEFAULT_ATOL,
    rtol: Rtol = None,
    inputs: Inputs = None,
    as_json: Json = False,
    force: Force = False,
    allow_code: AllowCode = False,
    imports: Imports = None,
    bake_preprocessing: BakePreprocessing = False,
    weights: ModelWeights = None,
) -> int:
    """Fold frozen BatchNormalization layers into their neighbours' weights, write and verify.

    A BN after a linear Conv/Dense/Depthwise/Separable/Transpose layer is folded into its kernel
    and bias; a BN before a Dense, 1x1 or valid-padded conv (or Flatten -> Dense) into that
    layer's input side; any other BN becomes an exact, weightless Rescaling ("affine"). Only
    frozen BNs (trainable=False, directly or through an enclosing model) are touched unless --all.
    The written file is reloaded with plain Keras and compared with the original; exit 1 and no
    output when it differs beyond tolerance.

    Example: surgeon fold-bn model.h5 -o folded.h5 --json
    """
    from surgeon.fold import fold_bn_file
    from surgeon.report import status

    options = verify_options(no_verify, samples, atol, rtol, inputs)
    with status("Folding BatchNormalization and verifying with Keras..."):
        result = fold_bn_file(str(model), str(output), fold_all=fold_all, force=force, verify=options, allow_code=allow_code)
    if as_json:
        print_json(result.to_json())
    else:
        _print(result)
    return 0 if result.passed else EXIT_FAILED


def _print(result) -> None:
    from surgeon.report import action_counts, changes_table, print_notes, print_verification

    out = console()
    report = result.passes[0]
    if report.changes:
        out.print(changes_table(report, ["layer", "action", "into", "reason"]))
    else:
        out.print("No BatchNormalization layer in the model.")
    if report.changes:
        out.print(f"BatchNormalization: {action_counts(report)}")
    print_notes(out, report.notes + result.notes)
    print_verification(out, result.verification)
    if result.output:
        out.print(f"[green]wrote[/green] {result.output}")
    else:
        out.print("[red]nothing written[/red]: the folded model does not match the original; "
                  "report the layers above, or loosen --rtol if the error is expected (mixed precision)")
