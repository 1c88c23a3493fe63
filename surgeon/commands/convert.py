"""``surgeon convert MODEL -o OUT``: a Keras 3 file from a Keras 2 (or Keras 3) one, verified."""

from __future__ import annotations

from surgeon.commands.common import (
    Imports, AllowCode, Atol, EXIT_FAILED, Force, Json, ModelPath, ModelWeights, NoVerify, OutputPath, Rtol, Samples, command, console, print_json,
    verify_options,
)
from surgeon.verify import DEFAULT_ATOL


@command
def convert(
    model: ModelPath,
    output: OutputPath,
    force: Force = False,
    no_verify: NoVerify = False,
    samples: Samples = None,
    atol: Atol = DEFAULT_ATOL,
    rtol: Rtol = None,
    as_json: Json = False,
    allow_code: AllowCode = False,
    imports: Imports = None,
    weights: ModelWeights = None,
) -> int:
    """Write the Keras 3 equivalent of a model and verify it: Keras 2 files included (.h5, tf.keras
    .keras, SavedModel directories, architecture JSON + weights).

    Renamed layers, translated TF-op layers and optimizer settings are listed; stored optimizer
    state is dropped (the compile config is kept). With tf_keras installed (pip install
    'surgeon[keras2]') the result is also compared with the original run by Keras 2 itself.

    Example: surgeon convert my_model/ -o my_model.keras

    Example: surgeon convert model.json --weights weights.h5 -o model.keras
    """
    from surgeon.convert import convert_file
    from surgeon.report import print_notes, print_verification, status

    with status("Converting and verifying..."):
        result = convert_file(str(model), str(output), force=force, allow_code=allow_code,
                              verify=verify_options(no_verify, samples, atol, rtol))
    if as_json:
        print_json(result.to_json())
        return 0 if result.passed else EXIT_FAILED
    from rich.markup import escape

    out = console()
    print_notes(out, [note for report in result.passes for note in report.notes] + result.notes)
    print_verification(out, result.verification, "Against surgeon's reading of the original")
    if result.checked is not None:
        if result.checked.skipped:
            out.print(f"[yellow]check against the original runtime skipped:[/yellow] {escape(result.checked.skipped)}")
        else:
            print_verification(out, result.checked.report, "Against the original run by Keras 2 (tf_keras)")
    if result.passed:
        out.print(f"[green]wrote {escape(result.output)}[/green]")
        return 0
    out.print("[red]verification failed; nothing was written[/red]")
    return EXIT_FAILED
