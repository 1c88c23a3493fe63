"""``surgeon features BASE DATA -o OUT.npy``: compute a base's features once, for training a top."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from surgeon.commands.common import AllowCode, Force, Json, command, console, print_json


@command
def features(
    base: Annotated[Path, typer.Argument(metavar="BASE", help="The base model file (as written by `surgeon split`).", show_default=False)],
    data: Annotated[Path, typer.Argument(metavar="DATA", help="An .npy/.npz array file (.npz keyed by input name), or a folder of images with one sub-folder per class.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Features file: .npy, or .npz (one array per base output).", show_default=False)],
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Samples per batch.")] = 32,
    force: Force = False,
    as_json: Json = False,
    allow_code: AllowCode = False,
) -> int:
    """Run the base in inference mode over DATA and write its outputs, in input order.

    Memory stays bounded: inputs are memory-mapped or streamed and the output is written batch by
    batch. For a folder of images the labels go to <output stem>_labels.npy and the preprocessing
    applied is printed. A progress bar shows on stderr.

    Example: surgeon features parts/model_base.keras images.npy -o features.npy --batch-size 64
    """
    from surgeon.features import extract_features

    result = extract_features(str(base), str(data), str(output), batch_size=batch_size, force=force,
                              progress=True, allow_code=allow_code)
    if as_json:
        print_json(result.to_json())
        return 0
    from rich.table import Table

    out = console()
    table = Table(title=f"Features of {result.count} samples from {result.data}", title_justify="left")
    table.add_column("key", overflow="fold")
    table.add_column("shape", overflow="fold")
    for key, shape in result.features.items():
        table.add_row(key, str(tuple(shape)))
    out.print(table)
    if result.preprocessing:
        out.print(f"images {result.preprocessing}")
        out.print(f"classes (label = index): {', '.join(result.class_names or [])}")
    out.print(f"wrote [bold]{result.output}[/bold]" + (f" and [bold]{result.labels}[/bold]" if result.labels else "")
              + f" in {result.seconds:.2f} s ({result.samples_per_second:.1f} samples/s)")
    return 0
