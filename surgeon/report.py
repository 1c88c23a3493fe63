"""Tables for people: every command prints through these (JSON goes through ``to_json`` instead)."""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from surgeon.passes import PassReport
from surgeon.verify import VerifyReport


def verification_table(report: VerifyReport, title: str = "Verification") -> Table:
    floor = "a float32 floor where needed" if report.atol is None else f"{report.atol:g}"
    table = Table(title=f"{title} ({report.samples} samples, pass if max abs <= tolerance = {report.rtol:g} x output scale + {floor})",
                  title_justify="left")
    table.add_column("output", overflow="fold")  # names people type back are wrapped, never cut
    for column in ("mode", "max abs", "max rel", "tolerance", "result"):
        table.add_column(column, justify="left" if column in ("mode", "result") else "right", no_wrap=True)
    for check in report.checks:
        table.add_row(
            escape(check.name), check.mode, f"{check.max_abs:.3g}", f"{check.max_rel:.3g}",
            f"{report.rtol * check.scale + check.floor:.3g}", "[green]pass[/green]" if check.passed else "[red]FAIL[/red]",
        )
    return table


def print_verification(console: Console, report: VerifyReport | None, title: str = "Verification") -> None:
    if report is None:
        console.print("[yellow]verification skipped (--no-verify)[/yellow]")
        return
    for note in report.notes:
        console.print(f"note: {escape(note)}")
    if report.problem:
        console.print(f"[red]verification failed:[/red] {escape(report.problem)}")
        return
    console.print(verification_table(report, title))
    verdict = "[green]equivalent[/green]" if report.passed else "[red]NOT equivalent[/red]"
    console.print(f"{verdict}: largest absolute error {report.max_abs:.3g}, largest relative error {report.max_rel:.3g}")


def changes_table(report: PassReport, columns: Iterable[str] | None = None) -> Table:
    rows = report.changes
    columns = list(columns or dict.fromkeys(key for row in rows for key in row))
    table = Table(title=report.name, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")  # layer names wrap, never cut
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    return table


def print_notes(console: Console, notes: Iterable[str]) -> None:
    """One dim line per note; a note's text is printed as it is (``[n]`` is not markup)."""
    for note in notes:
        console.print(f"[dim]note: {escape(note)}[/dim]")


def action_counts(report: PassReport) -> str:
    """``2 folded, 1 left``: how many of a pass's rows took each action, in order of first appearance."""
    counts: dict[str, int] = {}
    for row in report.changes:
        counts[row["action"]] = counts.get(row["action"], 0) + 1
    return ", ".join(f"{count} {action}" for action, count in counts.items())


def print_fine_tune(out, report) -> None:
    """The fine-tune check for people: one line per check, then the layers that failed."""
    if report.problem:
        out.print(f"[red]fine-tune check could not run:[/red] {report.problem}")
        return
    labels = {
        "frozen_unchanged": f"frozen weights bit-for-bit unchanged after {report.steps} steps ({report.frozen_layers} layers)",
        "trainable_moved": f"trainable part moved ({report.trainable_layers} layers)",
        "frozen_mode_independent": "frozen part gives the same output in training and inference mode",
        "deterministic": "two runs from the same seed give identical weights",
    }
    for check, passed in report.checks.items():
        out.print(f"{'[green]pass[/green]' if passed else '[red]FAIL[/red]'}  {labels.get(check, check)}")
    for problem in report.problems:
        out.print(f"  [red]{problem.layer}[/red]: {problem.detail}")
    if report.stuck_layers:
        shown = ", ".join(report.stuck_layers[:8]) + (", ..." if len(report.stuck_layers) > 8 else "")
        out.print(f"[yellow]note:[/yellow] trainable layers whose weights did not move: {shown}")
    print_notes(out, report.notes)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return escape(", ".join(str(v) for v in value))
    return escape(str(value))


@contextlib.contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner on stderr for long steps (loading TensorFlow, verifying); silent when not a TTY."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield
        return
    with console.status(message):
        yield
