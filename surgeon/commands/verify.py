"""``surgeon verify REFERENCE CANDIDATE``: are two model files numerically equivalent?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from surgeon.commands.common import AllowCode, Atol, EXIT_FAILED, Inputs, Json, ModelPath, Rtol, Samples, command, console, print_json
from surgeon.verify import DEFAULT_ATOL


@command
def verify(
    reference: ModelPath,
    candidate: Annotated[Path, typer.Argument(metavar="CANDIDATE", help="The model file to check against the reference.", show_default=False)],
    inputs: Inputs = None,
    samples: Samples = None,
    atol: Atol = DEFAULT_ATOL,
    rtol: Rtol = None,
    training: Annotated[bool, typer.Option("--training", help="Also run the candidate in training mode against the reference's inference output.")] = False,
    fine_tune: Annotated[bool, typer.Option("--fine-tune", help="Also fine-tune the candidate for a few seeded steps: frozen weights must not move, the rest must, the frozen part must not depend on the training flag, runs must repeat.")] = False,
    as_json: Json = False,
    allow_code: AllowCode = False,
) -> int:
    """Compare two model files on the same inputs, in inference mode.

    Reports, per output, the largest absolute and relative error. Exit code 0 when equivalent
    within tolerance, 1 when not, 2 on bad input.

    Example: surgeon verify model.h5 folded.h5 --samples 16 --json
    """
    from surgeon.rewrite import verify_files
    from surgeon.report import print_fine_tune, print_verification, status

    with status("Loading models with Keras..."):
        report = verify_files(str(reference), str(candidate), inputs=str(inputs) if inputs else None, samples=samples,
                              atol=atol, rtol=rtol, training_check=training, allow_code=allow_code)
    checked = None
    if fine_tune:
        from surgeon.finetune_check import check_fine_tuning

        with status("Fine-tuning the candidate for a few steps..."):
            checked = check_fine_tuning(str(candidate), allow_code=allow_code)
    if as_json:
        print_json({"reference": str(reference), "candidate": str(candidate), **report.to_json(),
                    "fine_tune": checked.to_json() if checked else None})
    else:
        print_verification(console(), report)
        if checked:
            print_fine_tune(console(), checked)
    return 0 if report.passed and (checked is None or checked.passed) else EXIT_FAILED
