"""``surgeon split MODEL``: a frozen base and a trainable top such that top(base(x)) == MODEL(x)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from surgeon.commands.common import (
    BakePreprocessing, Imports, EXIT_FAILED, AllowCode, Atol, Force, Inputs, Json, ModelPath, ModelWeights, NoVerify, Rtol, Samples, command, console, print_json,
    verify_options,
)
from surgeon.verify import DEFAULT_ATOL


@command
def split(
    model: ModelPath,
    at: Annotated[str | None, typer.Option("--at", help="The last layer of the base (a nested layer as 'base/block3_out'). Default: the natural cut.", show_default=False)] = None,
    directory: Annotated[Path | None, typer.Option("--output-dir", "-o", help="Folder for <stem>_base and <stem>_top, created if missing (default: the model's folder).", show_default=False)] = None,
    base_out: Annotated[Path | None, typer.Option("--base-out", help="The base file (.keras or .h5).", show_default=False)] = None,
    top_out: Annotated[Path | None, typer.Option("--top-out", help="The top file (.keras or .h5).", show_default=False)] = None,
    fold_bn: Annotated[bool, typer.Option("--fold-bn", help="Fold the base's BatchNormalization into the preceding layers instead of only freezing it.")] = False,
    force: Force = False,
    as_json: Json = False,
    no_verify: NoVerify = False,
    inputs: Inputs = None,
    samples: Samples = None,
    atol: Atol = DEFAULT_ATOL,
    rtol: Rtol = None,
    allow_code: AllowCode = False,
    imports: Imports = None,
    bake_preprocessing: BakePreprocessing = False,
    weights: ModelWeights = None,
) -> int:
    """Cut a model into a frozen base (feature extractor) and a trainable top (head).

    The base is written frozen and mode-independent (Dropout and noise layers removed,
    BatchNormalization frozen or folded), so features computed once with `surgeon features` are
    exactly what the top sees when the two are put back together and fine-tuned. Every tensor
    crossing the cut becomes a base output and a top input, in the order printed. Both files are
    reloaded with plain Keras and top(base(x)) is compared with the model before either is kept.

    Example: surgeon split model.keras --at gap -o parts/
    """
    from surgeon.report import print_verification, status
    from surgeon.split import split_file

    options = verify_options(no_verify, samples, atol, rtol, inputs)
    with status("Splitting and verifying with Keras..."):
        result = split_file(
            str(model), at=at, base_path=str(base_out) if base_out else None, top_path=str(top_out) if top_out else None,
            directory=str(directory) if directory else None, force=force, fold_bn=fold_bn, verify=options, allow_code=allow_code,
        )
    if as_json:
        print_json(result.to_json())
    else:
        _print(result, print_verification)
    return 0 if result.passed else EXIT_FAILED


def _print(result, print_verification) -> None:
    from rich.table import Table

    from surgeon.report import changes_table, print_notes
    from surgeon.shapes import shape_text

    out = console()
    report = result.report
    out.print(f"Cut after [bold]{report.at}[/bold] ({report.chosen_by})")
    table = Table(title="Tensors crossing the cut (base outputs = top inputs, in this order)", title_justify="left")
    for column in ("#", "top input", "computed by", "shape"):
        table.add_column(column, overflow="fold")
    for index, tensor in enumerate(report.cut):
        table.add_row(str(index), tensor.name, tensor.source, shape_text(tensor.shape))
    for offset, name in enumerate(report.passthrough_inputs):
        table.add_row(str(len(report.cut) + offset), name, "model input (passed to the top directly)", "")
    out.print(table)
    out.print(f"base: {len(report.base_layers)} layers, all frozen; top: {len(report.top_layers)} layers, flags kept")
    for base_pass in report.base_passes:
        if base_pass.changes:
            out.print(changes_table(base_pass))
    print_notes(out, report.notes + result.notes)
    print_verification(out, result.verification, "Verification of top(base(x)) against the model")
    if result.passed:
        out.print(f"wrote [bold]{result.base}[/bold] and [bold]{result.top}[/bold]")
    else:
        out.print("[red]nothing was written[/red]")
