"""``surgeon features BASE DATA -o OUT``: compute a base's features once, for training a top."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from surgeon.commands.common import AllowCode, BakePreprocessing, Force, Imports, Json, command, console, fail, print_json


@command
def features(
    base: Annotated[Path, typer.Argument(metavar="BASE", help="The base model file (as written by `surgeon split`).", show_default=False)],
    data: Annotated[Path, typer.Argument(metavar="DATA", help="An .npy/.npz array file (.npz keyed by input name), a folder of .npy shards (sorted by name), or a folder of images with one sub-folder per class.", show_default=False)],
    output: Annotated[str, typer.Option("--output", "-o", help="Features: an .npy, an .npz (one array per base output), or a directory of shards (a name ending in /; any name with --engine ray), which resumes if interrupted.", show_default=False)],
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Samples per batch.")] = 32,
    engine: Annotated[str, typer.Option("--engine", help="local: this process; ray: a pool of Ray workers (pip install 'surgeon[ray]').")] = "local",
    address: Annotated[str | None, typer.Option("--address", help="Ray cluster to run on (HOST:PORT of the head node, ray://HOST:10001 or auto); default: a local Ray instance.", show_default=False)] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Ray workers (actors), each loading the base once. Locally they share this machine's CPUs; on a cluster each takes one CPU.")] = 2,
    shard_size: Annotated[int, typer.Option("--shard-size", min=1, help="Samples per shard of a directory output (rounded up to whole batches).")] = 4096,
    force: Force = False,
    as_json: Json = False,
    allow_code: AllowCode = False,
    imports: Imports = None,
    bake_preprocessing: BakePreprocessing = False,
) -> int:
    """Run the base in inference mode over DATA and write its outputs, in input order.

    Memory stays bounded: inputs are memory-mapped or streamed and the output is written batch by
    batch. For a folder of images the labels are written too (<output stem>_labels.npy, or in the
    directory) and the preprocessing applied is printed. Progress goes to stderr. Read any output
    back in Python with surgeon.open_features(OUT).

    Example: surgeon features parts/model_base.keras images/ -o features/ --engine ray --workers 2
    """
    from surgeon.features import extract_features

    try:
        result = extract_features(str(base), str(data), output, batch_size=batch_size, force=force, progress=True,
                                  allow_code=allow_code, engine=engine, workers=workers, address=address, shard_size=shard_size)
    except KeyboardInterrupt:
        if not Path(output).is_dir():
            raise
        fail(f"interrupted; the shards recorded in {output}'s manifest are kept: run the same command again to resume")
        raise typer.Exit(130) from None
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
    speed = f" in {result.seconds:.2f} s ({result.samples_per_second:.1f} samples/s)"
    if result.layout == "file":
        out.print(f"wrote [bold]{result.output}[/bold]" + (f" and [bold]{result.labels}[/bold]" if result.labels else "") + speed)
        return 0
    if not result.computed:
        out.print(f"{result.output} was already complete ({result.shards} shard(s)); nothing computed")
        out.print(f"read it with: surgeon.open_features({result.output!r})")
        return 0
    engine_text = f"{result.workers} Ray worker(s)" if result.engine == "ray" else "this process"
    resumed = f"; {result.shards_resumed} were done by an earlier run" if result.shards_resumed else ""
    startup = f", {result.first_shard_seconds:.1f} s of it until the first shard (Ray start-up)" if result.engine == "ray" and result.first_shard_seconds else ""
    out.print(f"wrote [bold]{result.output}[/bold]: {result.shards} shard(s) + manifest.json{resumed}; "
              f"computed {result.computed} samples on {engine_text}{speed}{startup}")
    out.print(f"read it with: surgeon.open_features({result.output!r})")
    return 0
