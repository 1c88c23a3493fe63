"""The ``surgeon`` command line: a thin Typer layer over the library.

Exit codes: 0 success, 1 verification failed (nothing written), 2 bad input or usage.
"""

from __future__ import annotations

from typing import Annotated

import typer

from surgeon.commands import convert as convert_command
from surgeon.commands import fold_bn as fold_bn_command
from surgeon.commands import inspect as inspect_command
from surgeon.commands import freeze as freeze_command
from surgeon.commands import prepare as prepare_command
from surgeon.commands import diff as diff_command
from surgeon.commands import verify as verify_command
from surgeon.commands import split as split_command
from surgeon.commands import features as features_command

app = typer.Typer(
    name="surgeon",
    help=(
        "Rewrite saved Keras models so that fine-tuning does what you expect: fold frozen "
        "BatchNormalization, split a frozen base from a trainable top, bake trainable flags in, "
        "and verify every file written.\n\n"
        "Exit codes: 0 success, 1 verification failed (nothing written), 2 bad input."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

def _print_version(value: bool) -> None:
    if value:
        import surgeon  # its __version__ is the code running, also from a source tree

        typer.echo(f"surgeon {surgeon.__version__}")
        raise typer.Exit()


@app.callback()
def options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print surgeon's version and exit.")] = False,
) -> None:
    """Rewrite saved Keras models so that fine-tuning does what you expect."""


app.command("inspect")(inspect_command.inspect)
app.command("verify")(verify_command.verify)
app.command("freeze")(freeze_command.freeze)
app.command("prepare")(prepare_command.prepare)
app.command("diff")(diff_command.diff)
app.command("split")(split_command.split)
app.command("features")(features_command.features)
app.command("fold-bn")(fold_bn_command.fold_bn)
app.command("convert")(convert_command.convert)


def main() -> None:
    from surgeon import watchdog
    from surgeon.io.keras_model import own_process

    own_process()  # TensorFlow's objects leave the garbage collector's sight once imported
    watchdog.install()  # no input may hang the command: see watchdog.py
    app()


if __name__ == "__main__":
    main()
