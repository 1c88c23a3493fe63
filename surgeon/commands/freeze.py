"""``surgeon freeze MODEL -o OUT``: bake trainable flags in, recompile to match, verify, fine-tune-check."""

from __future__ import annotations

from typing import Annotated

import typer

from surgeon.commands.common import (
    BakePreprocessing, Imports, EXIT_FAILED, AllowCode, Atol, Force, Inputs, Json, ModelPath, ModelWeights, NoVerify, OutputPath, Rtol, Samples, command, console,
    print_json, verify_options,
)
from surgeon.verify import DEFAULT_ATOL

# Selection and compile options, shared with ``prepare``.
Until = Annotated[str | None, typer.Option("--until", help="Freeze every layer up to and including LAYER (topological order), unfreeze the rest.", show_default=False)]
FreezeGlob = Annotated[list[str] | None, typer.Option("--freeze", help="Freeze layers matching this glob (path 'base/conv*' or bare name); repeatable.", show_default=False)]
UnfreezeGlob = Annotated[list[str] | None, typer.Option("--unfreeze", help="Unfreeze layers matching this glob; repeatable; applied after --until and --freeze.", show_default=False)]
FreezeAll = Annotated[bool, typer.Option("--all", help="Freeze every layer (applied first).")]
KeepBnFrozen = Annotated[bool, typer.Option("--keep-bn-frozen/--train-bn", help="Keep every BatchNormalization frozen, even in unfrozen blocks (the usual fine-tuning advice).")]
Optimizer = Annotated[str | None, typer.Option("--optimizer", help="Compile with a fresh optimizer of this name (adam, sgd, rmsprop, adamw, ...).", show_default=False)]
LearningRate = Annotated[float | None, typer.Option("--learning-rate", "--lr", help="Learning rate of the (kept or new) optimizer.", show_default=False)]
Loss = Annotated[str | None, typer.Option("--loss", help="Loss name (e.g. categorical_crossentropy).", show_default=False)]
Metrics = Annotated[list[str] | None, typer.Option("--metrics", help="Metric name; repeatable or comma-separated.", show_default=False)]


def selection_from(until, freeze_globs, unfreeze_globs, freeze_all, keep_bn_frozen):
    from surgeon.passes.freeze import Selection

    return Selection(until=until, freeze=tuple(freeze_globs or ()), unfreeze=tuple(unfreeze_globs or ()), all=freeze_all, keep_bn_frozen=keep_bn_frozen)


def compile_from(optimizer, learning_rate, loss, metrics):
    from surgeon.passes.recompile import CompileOptions

    names = None if metrics is None else tuple(m.strip() for item in metrics for m in item.split(",") if m.strip())
    return CompileOptions(optimizer=optimizer, learning_rate=learning_rate, loss=loss, metrics=names)


def rewrite_command(library_function: str, message: str, doc: str):
    """One Typer command over ``surgeon.prepare.<library_function>``: freeze and prepare take the
    same selection, compile and verification options, so they share this signature."""

    def run(
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
        import surgeon.prepare

        return run_rewrite(getattr(surgeon.prepare, library_function), message, model, output,
                           selection_from(until, freeze_globs, unfreeze_globs, freeze_all, keep_bn_frozen),
                           compile_from(optimizer, learning_rate, loss, metrics), no_verify, samples, atol, rtol, inputs, as_json, force, allow_code)

    run.__doc__ = doc
    run.__name__ = library_function.removesuffix("_file")
    return command(run)


freeze = rewrite_command("freeze_file", "Freezing, verifying and fine-tune-checking with Keras...", """Write a copy of MODEL whose trainable flags are baked in and whose compile state matches them.

    Selection (applied in this order): --all, --until, --freeze, --unfreeze, then BatchNormalization
    kept frozen (--train-bn to let them train). Names reach into nested models ('base/conv1' or a
    unique bare name). Without a selection the current flags are kept and made consistent. The
    input's loss, metrics and optimizer config are kept with a fresh optimizer (no stale slots),
    unless --optimizer/--learning-rate/--loss/--metrics say otherwise. The written file is reloaded
    with plain Keras, compared with the input, and fine-tuned for a few seeded steps: frozen weights
    must stay bit-for-bit, the trainable part must move, the frozen part must not change with the
    training flag, and two runs must agree. Exit 1 and no output otherwise.

    Example: surgeon freeze vgg16.h5 -o ready.h5 --until block4_pool --unfreeze 'block5_*' --optimizer adam --lr 1e-4
    """)


def run_rewrite(function, message, model, output, selection, compile, no_verify, samples, atol, rtol, inputs, as_json, force, allow_code) -> int:
    from surgeon.report import status

    options = verify_options(no_verify, samples, atol, rtol, inputs)
    with status(message):
        result = function(str(model), str(output), selection=selection, compile=compile, force=force, verify=options, allow_code=allow_code)
    if as_json:
        print_json(result.to_json())
    else:
        print_result(result)
    return 0 if result.passed else EXIT_FAILED


def print_result(result) -> None:
    from rich.table import Table

    from surgeon.passes import PassReport
    from surgeon.report import action_counts, changes_table, print_fine_tune, print_notes, print_verification

    out = console()
    by_name = {report.name: report for report in result.passes}
    flags = [report for report in result.passes if report.name in ("freeze", "freeze_bn")]
    if flags:
        # prepare has two flag passes (selection, then the BN rule): first "before", last "after".
        before, after = flags[0].before, flags[-1].after
        table = Table(title="Parameters", title_justify="left")
        for column in ("", "trainable", "non-trainable"):
            table.add_column(column, justify="right" if column else "left")
        table.add_row("before", f"{before.trainable:,}", f"{before.non_trainable:,}")
        table.add_row("after", f"{after.trainable:,}", f"{after.non_trainable:,}")
        out.print(table)
        merged = PassReport("flags changed", net_flag_changes(flags))
        if merged.changes:
            out.print(changes_table(merged, ["layer", "type", "params", "before", "after"]))
        else:
            out.print("No layer changed its flag.")
    for name in ("fold_bn", "strip_dropout"):
        report = by_name.get(name)
        if report is not None and report.changes:
            out.print(f"{name}: {action_counts(report)}")
            left = [row for row in report.changes if row.get("action") == "left"]
            if left:  # the note "see 'reason'" points here
                out.print(changes_table(PassReport(f"{name}: left", left), ["layer", "reason"]))
    for report in result.passes:
        if report.name == "recompile":
            for row in report.changes:
                details = ", ".join(f"{k} {row[k]}" for k in ("optimizer", "learning_rate", "loss", "metrics") if row.get(k) is not None)
                out.print(f"compile: {row['action']}" + (f" ({details})" if details else ""))
        print_notes(out, report.notes)
    print_notes(out, result.notes)
    print_verification(out, result.verification)
    if result.checked is not None:
        print_fine_tune(out, result.checked)
    if result.output:
        out.print(f"[green]wrote[/green] {result.output}")
    else:
        out.print("[red]nothing written[/red]: the checks above failed")


def net_flag_changes(reports) -> list[dict]:
    """One row per layer whose flag ends changed: the first pass's "before", the last one's "after".

    prepare runs two flag passes (the selection, then the BN rule): a BN unfrozen by the first and
    frozen again by the second has not changed at all.
    """
    rows: dict[str, dict] = {}
    for report in reports:
        for row in report.changes:
            if row["layer"] in rows:
                rows[row["layer"]] = {**rows[row["layer"]], "after": row["after"]}
            else:
                rows[row["layer"]] = dict(row)
    return [row for row in rows.values() if row["before"] != row["after"]]

