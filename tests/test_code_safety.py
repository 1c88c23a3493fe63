"""No code from files: a model whose Lambda would create a marker file is refused by every command.

``fixtures/lambda_marker.*`` hold a Lambda that creates ``MARKER_surgeon_lambda`` in the current
directory when called. Two variants are made here from the same marshalled bytecode, so that the
code hides where a check of Lambda layers alone would miss it:
- ``onload``: the Lambda without ``output_shape``, so Keras calls the function to infer it;
- ``hidden``: no Lambda layer at all, the function stored as the ``activation`` of a Dense layer.
- ``hidden``'s code runs when the model is called (Dense infers its shape without calling it).
Every test runs in a fresh working directory and asserts the marker never appears there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import fixture_path
from test_bad_inputs import input_data, argv_for, command_for, edit_h5_config, edit_keras_config, layer_of, run_cli

MARKER = "MARKER_surgeon_lambda"
# Commands that only read configs and weight arrays (no Keras): they never need --allow-code.
READ_ONLY = ("inspect", "diff")
COMMANDS = ["inspect", "verify", "verify-candidate", "fold-bn", "split", "features", "freeze", "prepare", "diff", "convert"]


def _without_output_shape(config: dict) -> None:
    layer_of(config, "marker_lambda")["config"].pop("output_shape")


def _hidden_in_activation(config: dict) -> None:
    """Replace the Lambda by an identity and move its bytecode into the Dense layer's activation."""
    lam = layer_of(config, "marker_lambda")
    code = lam["config"]["function"]["config"]["code"]
    lam["class_name"] = "Activation"
    lam["config"] = {"name": "marker_lambda", "trainable": True, "dtype": "float32", "activation": "linear"}
    lam.pop("build_config", None)
    lam["inbound_nodes"][0]["kwargs"] = {}  # Activation.call takes no mask
    # serialization_lib writes a Python lambda as {"class_name": "__lambda__", "config": {"value": func_dump(f)}}.
    layer_of(config, "out")["config"]["activation"] = {"class_name": "__lambda__", "config": {"value": [code, None, None]}}


VARIANTS = {
    "lambda.keras": lambda d: Path(fixture_path("lambda_marker.keras")),
    "lambda.h5": lambda d: Path(fixture_path("lambda_marker.h5")),
    "onload.keras": lambda d: edit_keras_config("lambda_marker.keras", d / "onload.keras", _without_output_shape),
    "onload.h5": lambda d: edit_h5_config("lambda_marker.h5", d / "onload.h5", _without_output_shape),
    "hidden.keras": lambda d: edit_keras_config("lambda_marker.keras", d / "hidden.keras", _hidden_in_activation),
    "hidden.h5": lambda d: edit_h5_config("lambda_marker.h5", d / "hidden.h5", _hidden_in_activation),
}


@pytest.fixture(scope="module")
def code_files(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("code")
    files = {name: build(directory) for name, build in VARIANTS.items()}
    files["data"] = input_data(directory)
    return files


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A fresh current directory: where the Lambda would create its marker."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def assert_no_marker(workdir: Path) -> None:
    assert not (workdir / MARKER).exists(), "code stored in the model file ran"


@pytest.mark.parametrize("command_name", COMMANDS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_command_refuses_code_in_a_file_and_never_runs_it(variant, command_name, code_files, workdir):
    base, command = command_for(command_name)
    good = fixture_path("convbn.h5")
    argv = [base] + argv_for(command_name, command, {"input": str(code_files[variant]), "good": good, "output": str(workdir / "out.h5"), "data": str(code_files["data"])})
    result = run_cli(argv)
    assert_no_marker(workdir)
    assert [p.name for p in workdir.iterdir()] == [], "nothing may be written"
    if command_name in READ_ONLY:
        assert result.exit_code in (0, 1), result.stderr  # 1: diff found different weights
        if command_name == "inspect" and not variant.startswith("hidden"):
            assert "code-in-file" in result.stdout
        return
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1, result.stderr
    assert "allow-code" in result.stderr, result.stderr


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_reading_and_inspecting_a_code_file_never_needs_allow_code(variant, code_files, workdir):
    from surgeon.inspection import inspect_spec
    from surgeon.io import read_model
    from surgeon.spec import code_carriers

    spec = read_model(str(code_files[variant]))
    inspect_spec(spec)
    assert code_carriers(spec.config) == (["out"] if variant.startswith("hidden") else ["marker_lambda"])
    assert_no_marker(workdir)


@pytest.mark.parametrize("variant", ["lambda.h5", "onload.keras", "hidden.h5"])
def test_the_library_refuses_code_unless_allowed_and_writes_nothing(variant, code_files, workdir):
    from surgeon.errors import SurgeonError
    from surgeon.rewrite import rewrite_file

    with pytest.raises(SurgeonError):
        rewrite_file(str(code_files[variant]), str(workdir / "out.h5"), [])
    assert_no_marker(workdir)
    assert list(workdir.iterdir()) == []


def test_code_hidden_outside_a_lambda_layer_is_refused_even_without_verification(code_files, workdir):
    from surgeon.errors import SurgeonError
    from surgeon.rewrite import VerifyOptions, rewrite_file

    with pytest.raises(SurgeonError):
        rewrite_file(str(code_files["hidden.h5"]), str(workdir / "out.h5"), [], verify=VerifyOptions(enabled=False))
    assert list(workdir.iterdir()) == []


def test_with_allow_code_verify_loads_the_lambda_file_and_its_code_runs(workdir):
    """The flag works, and the marker mechanism is live: its absence above means something."""
    result = run_cli(["verify", fixture_path("lambda_marker.h5"), fixture_path("lambda_marker.keras"), "--allow-code", "--samples", "2"])
    assert result.exit_code == 0, result.stderr
    assert (workdir / MARKER).exists()


@pytest.mark.parametrize("variant, runs_on", [("onload.keras", "load"), ("hidden.h5", "call")])
def test_the_variants_really_hold_code_that_runs(variant, runs_on, code_files, workdir):
    """With code allowed, building the model (onload) or calling it (hidden) creates the marker."""
    import numpy as np

    from surgeon.errors import SurgeonError
    from surgeon.io import read_model
    from surgeon.io.keras_model import build_keras_model

    spec = read_model(str(code_files[variant]))
    with pytest.raises(SurgeonError):
        build_keras_model(spec)
    assert_no_marker(workdir)
    model = build_keras_model(spec, allow_code=True)
    assert (workdir / MARKER).exists() == (runs_on == "load")
    model(np.zeros((1, 16, 16, 3), "float32"))
    assert (workdir / MARKER).exists()
