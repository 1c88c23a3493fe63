"""The advice surgeon prints works when followed (issue 11 item 5), and what it says is true."""

from __future__ import annotations

import os
from pathlib import Path

from typer.testing import CliRunner

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from surgeon.cli import app  # noqa: E402
from surgeon.inspection import inspect_spec  # noqa: E402
from surgeon.io import read_model  # noqa: E402
from surgeon.layer_kinds import mode_dependent_layers  # noqa: E402
from surgeon.passes.freeze import Selection  # noqa: E402
from surgeon.prepare import prepare_file  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def hazards(path) -> dict[str, object]:
    return {h.kind: h for h in inspect_spec(read_model(str(path), values=False)).hazards}


def test_a_model_with_frozen_dropout_is_never_told_to_run_freeze_and_the_advice_works(tmp_path):
    found = hazards(FIXTURES / "nested.h5")
    assert "frozen-dropout" in found and "optimizer-state" in found
    assert not any(h.fix.startswith("surgeon freeze") for h in found.values())
    command = found["optimizer-state"].fix.split()[1:]  # surgeon prepare nested.h5 -o prepared.h5
    command[1], command[3] = str(FIXTURES / command[1]), str(tmp_path / command[3])
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output


def test_after_prepare_inspect_does_not_suggest_fold_bn_for_a_bn_kept_frozen_under_a_trainable_conv(tmp_path):
    out = tmp_path / "prepared.h5"
    result = prepare_file(str(FIXTURES / "late_freeze.h5"), str(out), selection=Selection(until="relu1"), fine_tune=False)
    assert result.passed
    spec = read_model(str(out), values=False)
    assert any(p == "bn2" for p, layer in spec.layers())  # kept frozen by the BN rule, beside trainable conv2
    assert "frozen-batchnorm" not in hazards(out)


def test_a_compiled_but_never_trained_model_has_no_flag_after_compile_hazard(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d"), keras.layers.BatchNormalization(name="bn")])
    model.compile("adam", "mse")
    model.save(tmp_path / "compiled.keras")
    assert "flag-after-compile" not in hazards(tmp_path / "compiled.keras")


def test_frozen_batchnorm_does_not_count_as_acting_in_training_mode():
    spec = read_model(str(FIXTURES / "late_freeze.h5"), values=False)
    from surgeon.passes.freeze import freeze

    frozen, _ = freeze(spec, Selection(until="relu1"))  # bn2 frozen by the BN rule, drop trainable
    left = mode_dependent_layers(frozen)
    assert "drop" in left and "bn2" not in left and "bn1" not in left
