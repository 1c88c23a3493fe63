"""``surgeon diff A B``: which layers' weights differ between two files, and by how much."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from surgeon.commands.common import Imports, EXIT_FAILED, Json, ModelPath, command, console, print_json
from surgeon.errors import SurgeonError


@command
def diff(
    a: ModelPath,
    b: Annotated[Path, typer.Argument(metavar="B", help="The model file to compare with A (same architecture, e.g. after fine-tuning).", show_default=False)],
    atol: Annotated[float, typer.Option("--atol", min=0.0, help="Weights within this absolute difference count as the same.")] = 0.0,
    as_json: Json = False,
    all_layers: Annotated[bool, typer.Option("--all-layers", help="List identical layers too, not only those that differ.")] = False,
    imports: Imports = None,
    frozen_only: Annotated[bool, typer.Option("--frozen-only", help="Exit 0 when every weight frozen in A is bit-for-bit identical in B, whatever the trainable part did (a CI gate after fine-tuning).")] = False,
) -> int:
    """Compare the weights of two model files layer by layer (no TensorFlow needed).

    For each layer: identical bit for bit, within --atol, or different (largest absolute
    difference and the relative norm ||B - A|| / ||A||), or present in only one file. Also says
    whether every layer frozen in A is unchanged in B: the proof, after a fine-tuning job, that the
    frozen part did not move. Exit 0 when the files' weights are the same, 1 when not, 2 on bad input;
    with --frozen-only, exit 0 when the frozen part is unchanged, 1 when it moved.

    Example: surgeon diff prepared.h5 finetuned.h5 --frozen-only
    """
    from surgeon.diff import diff_files
    from surgeon.io import detect_input

    detect_input(str(b))
    report = diff_files(str(a), str(b), atol=atol)
    if frozen_only and report.frozen_unchanged is None:
        raise SurgeonError(f"no layer with weights is frozen in '{a}', so --frozen-only has nothing to check; "
                           "give the file as written before fine-tuning (e.g. by surgeon prepare)")
    if as_json:
        print_json(report.to_json())
    else:
        _print(report, all_layers, frozen_only)
    passed = report.frozen_unchanged if frozen_only else report.same
    return 0 if passed else EXIT_FAILED


def _print(report, all_layers: bool, frozen_only: bool = False) -> None:
    from rich.table import Table

    from surgeon.diff import IDENTICAL

    out = console()
    shown = [d for d in report.layers if all_layers or d.status != IDENTICAL]
    if shown:
        table = Table(title=f"Weights: {report.a} -> {report.b}", title_justify="left")
        for column, justify in (("layer", "left"), ("frozen in A", "left"), ("status", "left"), ("max abs", "right"), ("rel norm", "right")):
            table.add_column(column, justify=justify, overflow="fold")
        for d in shown:
            colour = "green" if d.status == IDENTICAL else ("yellow" if d.status == "within-atol" else "red")
            table.add_row(d.layer, {True: "yes", False: "no", None: ""}[d.frozen_in_a], f"[{colour}]{d.status}[/{colour}]",
                          "" if d.max_abs is None else f"{d.max_abs:.3g}", "" if d.rel_norm is None else f"{d.rel_norm:.3g}")
        out.print(table)
    counts = ", ".join(f"{report.count(s)} {s}" for s in ("identical", "within-atol", "different", "only-in-a", "only-in-b") if report.count(s))
    out.print(f"Layers with weights: {counts or 'none'}")
    if report.frozen_unchanged is not None:
        out.print("[green]frozen part (per A's flags) unchanged bit for bit[/green]" if report.frozen_unchanged
                  else "[red]frozen part (per A's flags) CHANGED[/red]")
    if not frozen_only:  # with --frozen-only the line above is the verdict
        out.print("[green]same weights[/green]" if report.same else "[red]weights differ[/red]")
