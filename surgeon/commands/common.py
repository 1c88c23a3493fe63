"""What every command shares: option types, error-to-exit-code mapping, JSON or table output."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Callable

import typer

from surgeon.errors import SurgeonError, one_line
from surgeon.rewrite import MIN_SAMPLES, VerifyOptions
from surgeon.verify import DEFAULT_RTOL, DEFAULT_SAMPLES, MIXED_PRECISION_RTOL
from surgeon.user_modules import import_user_modules

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

ModelPath = Annotated[Path, typer.Argument(metavar="MODEL", help=(
    "A Keras model: a .keras or .h5 file (Keras 3 or Keras 2), a tf.keras SavedModel directory, a keras-hub "
    "preset directory, or an architecture MODEL.json (model.to_json()) whose weights are given with --weights."), show_default=False)]
ModelWeights = Annotated[Path | None, typer.Option("--weights", help=(
    "Weights of a MODEL.json architecture (model.save_weights output). Default: the file beside it with "
    "the same stem: MODEL.h5, MODEL.weights.h5, MODEL_weights.h5 or MODEL.hdf5."), show_default=False)]
OutputPath = Annotated[Path, typer.Option("--output", "-o", help="Output file; .keras or .h5 picks the format.", show_default=False)]
Force = Annotated[bool, typer.Option("--force", help="Replace an existing output file.")]
Json = Annotated[bool, typer.Option("--json", help="Print a JSON report on stdout instead of tables.")]
AllowCode = Annotated[bool, typer.Option("--allow-code", help="Allow layers that run code stored in the file (Lambda). Only for files you trust.")]
NoVerify = Annotated[bool, typer.Option("--no-verify", help="Skip reloading and checking the written file (faster; not recommended).")]
Samples = Annotated[int | None, typer.Option("--samples", min=1, show_default=False, help=(
    f"Seeded random inputs used for verification [default: {DEFAULT_SAMPLES}; fewer (>= {MIN_SAMPLES}) for inputs larger "
    "than two 224x224 images]."))]
Atol = Annotated[float | None, typer.Option("--atol", min=0.0, show_default=False, help="Absolute part of the verification's tolerance [default: measured per output from float32 rounding, where the relative tolerance alone is exceeded].")]
Rtol = Annotated[float | None, typer.Option("--rtol", min=0.0, show_default=False, help=(
    f"Tolerance relative to each output's largest magnitude [default: {DEFAULT_RTOL:g}; {MIXED_PRECISION_RTOL:g} for "
    "float16/mixed-precision models]."))]
Imports = Annotated[list[str] | None, typer.Option("--import", metavar="MODULE", help="Import this Python module first (the one that registers your own Keras layers); repeatable.", show_default=False)]
BakePreprocessing = Annotated[bool, typer.Option("--bake-preprocessing", help="keras-hub task: put its image preprocessing (resize, scale, offset) into the output as built-in Resizing/Rescaling layers.")]
Inputs = Annotated[Path | None, typer.Option("--inputs", help="An .npz of inputs (keyed by input name) to verify on instead of random ones.", show_default=False)]


def fail(message: str) -> None:
    """One line on stderr, no traceback."""
    typer.echo(f"surgeon: error: {message}", err=True)


def command(function: Callable[..., int | None]) -> Callable[..., None]:
    """Map a command's outcome to exit codes: SurgeonError -> 2, returned code otherwise."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs) -> None:
        try:
            # Before anything is loaded: the modules register the user's Keras classes. They
            # import Keras, so TensorFlow is imported first with its start-up notices kept off
            # the terminal, as everywhere else.
            if kwargs.get("imports"):
                from surgeon.io.keras_model import quiet_tensorflow

                quiet_tensorflow()
            import_user_modules(kwargs.get("imports"))
            if kwargs.get("weights") is not None:  # --weights of a MODEL.json (ModelWeights)
                from surgeon.io.json_reader import pair_weights

                pair_weights(str(kwargs.get("model") or kwargs.get("base")), str(kwargs["weights"]))
            with _reading_options(kwargs):
                code = function(*args, **kwargs)
        except SurgeonError as error:
            fail(str(error))
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except KeyboardInterrupt:
            fail("interrupted; nothing was written")
            raise typer.Exit(130) from None
        except typer.Exit:
            raise
        except Exception as error:  # a file that breaks Keras in a way surgeon did not foresee
            if os.environ.get("SURGEON_DEBUG"):
                raise
            fail(f"{type(error).__name__}: {one_line(error)} (set SURGEON_DEBUG=1 for a traceback and please report it)")
            raise typer.Exit(EXIT_BAD_INPUT) from None
        raise typer.Exit(code or EXIT_OK)

    return wrapper


def _reading_options(kwargs: dict):
    """How files are read, for the whole command (a command reads its input more than once)."""
    import contextlib

    if not kwargs.get("bake_preprocessing"):
        return contextlib.nullcontext()
    from surgeon.io.keras_hub_reader import baking_preprocessing

    return baking_preprocessing()


def verify_options(no_verify: bool, samples: int | None, atol: float, rtol: float | None, inputs: Path | None = None):
    """The ``VerifyOptions`` of a rewriting command's flags (None: chosen from the model when it runs)."""
    return VerifyOptions(enabled=not no_verify, samples=samples, atol=atol, rtol=rtol, inputs=str(inputs) if inputs else None)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value):
    import numpy as np

    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def console():
    from rich.console import Console

    return Console(highlight=False)
