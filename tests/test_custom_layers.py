"""User-defined layers: ``--import MODULE`` registers them before anything loads; a custom layer
is one opaque unit to every rewrite; without the flag the class is named in one line.

The user's module is written into a temporary working directory (``--import user_layers`` finds
``./user_layers.py``, as ``python -c "import user_layers"`` would). Its ``Scale`` multiplies each
channel by a trained factor; the model puts BatchNormalization on both sides of it:
conv -> bn1 -> Scale -> bn2 -> conv2 (1x1) -> gap -> head, everything up to bn2 frozen.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

from surgeon.cli import app

MODULE = "surgeon_user_layers"  # a name no other test uses: the registry is per process
PACKAGE = "surgeon_user_pkg"
SOURCE = f'''
import keras

@keras.saving.register_keras_serializable(package="{PACKAGE}")
class Scale(keras.layers.Layer):
    def build(self, input_shape):
        self.factor = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="factor")

    def call(self, x):
        return x * self.factor


@keras.saving.register_keras_serializable(package="{PACKAGE}")
class Block(keras.layers.Layer):
    """Inner layers held in attributes: a .keras file stores their weights under those names."""

    def __init__(self, units=4, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense = keras.layers.Dense(units, name="inner_dense")

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, x):
        return self.dense(x)

    def get_config(self):
        return {{**super().get_config(), "units": self.units}}
'''

runner = CliRunner()
SESSION_CLASSES: dict = {}  # the class as first imported, for the independent references


@pytest.fixture(scope="session")
def user_dir(tmp_path_factory):
    """A working directory holding the user's module and the model saved with it (.keras and .h5)."""
    import keras

    folder = tmp_path_factory.mktemp("user_layers")
    (folder / f"{MODULE}.py").write_text(textwrap.dedent(SOURCE))
    (folder / "raising_module.py").write_text("raise RuntimeError('the module is broken')\n")
    sys.path.append(str(folder))
    try:
        module = __import__(MODULE)
    finally:
        sys.path.remove(str(folder))
    SESSION_CLASSES["Scale"] = module.Scale
    rng = np.random.default_rng(3)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = module.Scale(name="scale")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.Conv2D(4, 1, name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
    for name in ("bn1", "bn2"):
        model.get_layer(name).set_weights([rng.uniform(0.5, 1.5, 4), rng.normal(0, 0.5, 4), rng.normal(0, 0.5, 4), rng.uniform(0.5, 2, 4)])
    model.get_layer("scale").set_weights([rng.uniform(0.5, 2.0, 4).astype("float32")])
    for name in ("conv", "bn1", "scale", "bn2"):
        model.get_layer(name).trainable = False
    model.save(folder / "custom.keras")
    model.save(folder / "custom.h5")
    flat = keras.Input((6,))
    y = keras.layers.Dense(4, name="d1")(flat)
    y = keras.layers.BatchNormalization(name="bn")(y)
    y = module.Block(name="block")(y)
    with_block = keras.Model(flat, keras.layers.Dense(2, name="out")(y))
    with_block.get_layer("bn").set_weights([rng.uniform(0.5, 1.5, 4), rng.normal(0, 0.5, 4), rng.normal(0, 0.5, 4), rng.uniform(0.5, 2, 4)])
    with_block.get_layer("d1").trainable = with_block.get_layer("bn").trainable = False
    with_block.save(folder / "block.keras")
    SESSION_CLASSES["Block"] = module.Block
    return folder


@pytest.fixture
def in_user_dir(user_dir, monkeypatch):
    monkeypatch.chdir(user_dir)
    return user_dir


@pytest.fixture
def unregistered(monkeypatch):
    """The process as a fresh one: the user's module not imported, its class not in Keras' registry."""
    import keras

    for name in ("Scale", "Block"):
        monkeypatch.delitem(keras.saving.get_custom_objects(), f"{PACKAGE}>{name}", raising=False)
    monkeypatch.delitem(sys.modules, MODULE, raising=False)


def reference_outputs(folder, x):
    import keras

    with keras.saving.custom_object_scope({f"{PACKAGE}>Scale": SESSION_CLASSES["Scale"]}):
        return np.asarray(keras.models.load_model(folder / "custom.keras")(x))


def load_output(path):
    import keras

    return keras.models.load_model(path)


def seeded_images(count=4):
    return np.random.default_rng(0).uniform(-1, 1, (count, 8, 8, 3)).astype("float32")


@pytest.mark.parametrize("extension", [".keras", ".h5"])
def test_without_the_flag_the_class_its_package_and_the_flag_are_named(in_user_dir, unregistered, extension):
    result = runner.invoke(app, ["fold-bn", f"custom{extension}", "-o", f"out{extension}"])

    assert result.exit_code == 2
    message = result.output.strip()
    assert len(message.splitlines()) == 1
    assert "'Scale'" in message and PACKAGE in message and "--import" in message
    if extension == ".keras":  # the .keras config records the module the class came from
        assert f"--import {MODULE}" in message
    assert not (in_user_dir / f"out{extension}").exists()


@pytest.mark.parametrize("extension", [".keras", ".h5"])
def test_bns_around_the_custom_layer_fold_and_the_output_matches_keras(in_user_dir, unregistered, extension):
    output = f"folded{extension}"
    result = runner.invoke(app, ["fold-bn", f"custom{extension}", "-o", output, "--import", MODULE, "--json", "--force"])

    assert result.exit_code == 0, result.output
    actions = {row["layer"]: row["action"] for row in json.loads(result.output)["passes"][0]["changes"]}
    # bn1 folds into conv; bn2 sits between the custom layer and the trainable conv2, so it
    # becomes the exact affine (Rescaling) form.
    assert actions == {"bn1": "folded-after", "bn2": "affine"}
    folded = load_output(output)
    assert [layer.name for layer in folded.layers if type(layer).__name__ == "BatchNormalization"] == []
    x = seeded_images()
    expected = reference_outputs(in_user_dir, x)
    np.testing.assert_allclose(np.asarray(folded(x)), expected, rtol=1e-5, atol=1e-6)
    # The custom layer is one unit, its weight untouched.
    np.testing.assert_array_equal(folded.get_layer("scale").get_weights()[0],
                                  load_output(in_user_dir / "custom.keras").get_layer("scale").get_weights()[0])


def test_prepare_freezes_at_the_custom_layer_and_its_fine_tune_check_runs_in_its_own_process(in_user_dir, unregistered):
    result = runner.invoke(app, ["prepare", "custom.keras", "-o", "prepared.keras", "--until", "scale", "--import", MODULE,
                                 "--json", "--force"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    checked = report["checked"]
    assert checked["passed"], checked
    assert not any("ran in this process" in note for note in checked["notes"])  # the child imported the module
    prepared = load_output("prepared.keras")
    assert prepared.get_layer("scale").trainable is False
    assert prepared.get_layer("conv2").trainable is True


def test_split_at_the_custom_layer_gives_top_of_base_equal_to_the_model(in_user_dir, unregistered):
    result = runner.invoke(app, ["split", "custom.keras", "--at", "scale", "--base-out", "base.keras", "--top-out", "top.keras",
                                 "--import", MODULE, "--force"])

    assert result.exit_code == 0, result.output
    base, top = load_output("base.keras"), load_output("top.keras")
    assert "scale" in [layer.name for layer in base.layers]
    x = seeded_images()
    np.testing.assert_allclose(np.asarray(top(base(x))), reference_outputs(in_user_dir, x), rtol=1e-5, atol=1e-6)


def test_a_custom_layer_holding_inner_layers_keeps_its_weights_from_a_keras_file(in_user_dir, unregistered):
    import keras

    result = runner.invoke(app, ["fold-bn", "block.keras", "-o", "block_folded.keras", "--import", MODULE, "--force"])

    assert result.exit_code == 0, result.output
    with keras.saving.custom_object_scope({f"{PACKAGE}>Block": SESSION_CLASSES["Block"]}):
        original = keras.models.load_model(in_user_dir / "block.keras")
    folded = load_output("block_folded.keras")
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    np.testing.assert_allclose(np.asarray(folded(x)), np.asarray(original(x)), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(folded.get_layer("block").get_weights()[0], original.get_layer("block").get_weights()[0])


@pytest.mark.parametrize("extension", [".keras", ".h5"])
def test_a_frozen_custom_layer_that_creates_layers_is_a_hazard_and_prepare_says_why(in_user_dir, unregistered, extension):
    """Block creates its Dense in __init__ without passing its flag on: loaded frozen, it trains."""
    import keras

    inputs = keras.Input((6,))
    block = SESSION_CLASSES["Block"](name="block")
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(block(inputs)))
    block.trainable = False
    source = f"frozen_block{extension}"
    model.save(source)

    inspected = runner.invoke(app, ["inspect", source, "--json", "--import", MODULE])
    prepared = runner.invoke(app, ["prepare", source, "-o", f"out{extension}", "--import", MODULE, "--force"])

    hazards = {hazard["kind"]: hazard for hazard in json.loads(inspected.output)["hazards"]}
    assert hazards["frozen-but-trained"]["layers"] == ["block"]
    assert prepared.exit_code == 2 and "cannot be frozen in a file" in prepared.output and "--unfreeze 'block'" in prepared.output
    assert not os.path.exists(f"out{extension}")
    with keras.saving.custom_object_scope({f"{PACKAGE}>Block": SESSION_CLASSES["Block"]}):
        reloaded = keras.models.load_model(source)
    trained = {id(v) for v in reloaded.trainable_weights} & {id(v) for v in reloaded.get_layer("block").weights}
    assert reloaded.get_layer("block").trainable is False and trained  # what the hazard says


def test_verify_and_inspect_take_the_flag_too(in_user_dir, unregistered):
    verified = runner.invoke(app, ["verify", "custom.keras", "custom.h5", "--import", MODULE])
    inspected = runner.invoke(app, ["inspect", "custom.keras", "--json", "--import", MODULE])

    assert verified.exit_code == 0, verified.output
    special = json.loads(inspected.output)["special_layers"]
    assert special == [{"path": "scale", "class_name": "Scale", "kind": "custom", "registered_name": f"{PACKAGE}>Scale"}]


@pytest.mark.parametrize("module, says", [("no_such_module_xyz", "no module named 'no_such_module_xyz'"),
                                          ("raising_module", "raised RuntimeError: the module is broken")])
def test_an_import_that_fails_is_one_line_and_nothing_is_written(in_user_dir, module, says):
    result = runner.invoke(app, ["fold-bn", "custom.keras", "-o", "never.keras", "--import", module])

    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and says in result.output
    assert not os.path.exists(in_user_dir / "never.keras")


def test_library_callers_use_a_custom_object_scope(user_dir, unregistered, tmp_path):
    import keras

    from surgeon import fold_bn_file

    with keras.saving.custom_object_scope({f"{PACKAGE}>Scale": SESSION_CLASSES["Scale"]}):
        result = fold_bn_file(str(user_dir / "custom.keras"), str(tmp_path / "folded.keras"))

    assert result.passed and result.output


def test_import_keeps_tensorflows_start_up_notices_off_the_terminal(user_dir):
    """--import runs a module that imports Keras: stderr holds nothing but what surgeon says."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-m", "surgeon.cli", "inspect", "custom.keras", "--import", MODULE, "--json"],
                          cwd=user_dir, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": ""})
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stderr == ""
