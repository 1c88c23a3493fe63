"""``surgeon inspect MODEL``: layers, parameters and the fine-tuning traps a file holds.

Reads the file with h5py/zip/json only: no TensorFlow import, so it answers in a fraction of a second.
"""

from __future__ import annotations

from typing import Annotated

import typer

from surgeon.commands.common import BakePreprocessing, Imports, Json, ModelPath, ModelWeights, command, console, print_json


@command
def inspect(
    model: ModelPath,
    as_json: Json = False,
    all_layers: Annotated[bool, typer.Option("--layers/--no-layers", help="Show the table of layers.")] = True,
    imports: Imports = None,
    bake_preprocessing: BakePreprocessing = False,
    weights: ModelWeights = None,
) -> int:
    """Show a model file's layers, parameter counts and fine-tuning hazards.

    Each hazard names the layers involved and the surgeon command that removes it.

    Example: surgeon inspect model.h5 --json
    """
    from surgeon.inspection import inspect_spec
    from surgeon.io import read_model

    result = inspect_spec(read_model(str(model), values=False))
    if as_json:
        print_json(result.to_json())
        return 0
    _print(result, all_layers)
    return 0


def _print(result, all_layers: bool) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from surgeon.report import print_notes
    from surgeon.shapes import shape_text

    out = console()
    source = escape(f"{result.path} ({result.format}, Keras {result.keras_version or '?'})")
    if all_layers:
        # Rules under the header only, and per-sample shapes: the five columns fit 80 columns
        # with one line per layer (ResNet50's table was 361 lines, its last column cut off).
        table = Table(title=f"Model '{result.model_name}' from {source}", title_justify="left", box=box.SIMPLE_HEAD,
                      show_edge=False, pad_edge=False)
        names = ["  " * row.path.count("/") + row.path.rpartition("/")[2] for row in result.layers]
        shapes = [shape_text(row.output_shape, batch=False) for row in result.layers]
        params = [f"{row.params:,}" for row in result.layers]
        widths = {
            "type": min(max((len(row.class_name) for row in result.layers), default=4), 18),  # BatchNormalization whole
            "output shape": max([len("output shape"), *map(len, shapes)]),
            "params": max([len("params"), *map(len, params)]),
            "train": len("train"),
        }
        # Names people type back (--until, --at) get what the other columns leave (3 characters
        # between columns) and wrap beyond it: never cut.
        room = out.width - sum(widths.values()) - 3 * len(widths)
        widths["layer"] = max(5, min(max(map(len, names), default=5), room))
        columns = (("layer", "left"), ("type", "left"), ("output shape", "left"), ("params", "right"), ("train", "left"))
        for column, justify in columns:
            table.add_column(column, justify=justify, overflow="fold", min_width=widths[column])
        for name, row, shape, count in zip(names, result.layers, shapes, params):
            table.add_row(escape(name), row.class_name, shape, count, "yes" if row.trainable else "[dim]no[/dim]")
        out.print(table)
        out.print("(output shapes per sample, without the batch dimension)", style="dim")
    else:
        out.print(f"Model '{result.model_name}' from {source}")
    frozen = result.total_params - result.trainable_params
    out.print(f"Total params: {result.total_params:,}  trainable: {result.trainable_params:,}  non-trainable: {frozen:,}")
    out.print(f"Compiled: {'yes, optimizer ' + str(result.optimizer) if result.compiled else 'no'}")
    print_notes(out, result.notes)
    if result.special_layers:
        kinds = sorted({row["kind"] for row in result.special_layers})
        out.print(f"Layers beyond Keras' own ({', '.join(kinds)}; rewritten as one unit each):")
        for row in result.special_layers:
            out.print(f"  {escape(row['path'])}: {row['class_name']} ({row['kind']}, {escape(row['registered_name'])})")
    if result.unreachable_batch_norms:
        out.print("BatchNormalization no rewrite can reach:")
        for row in result.unreachable_batch_norms:
            out.print(f"  {escape(row['layer'])}: {escape(str(row['reason']))}")
    if not result.hazards:
        out.print("[green]No fine-tuning hazards found.[/green]")
        return
    out.print(f"\n[bold]Hazards ({len(result.hazards)})[/bold]")
    for hazard in result.hazards:
        out.print(f"[yellow]![/yellow] [bold]{hazard.kind}[/bold]: {escape(hazard.message)}")
        if hazard.layers:
            shown = ", ".join(hazard.layers[:8]) + (f", ... ({len(hazard.layers)} in all)" if len(hazard.layers) > 8 else "")
            out.print(f"    layers: {escape(shown)}")
        out.print(f"    fix: [cyan]{escape(hazard.fix)}[/cyan]")
