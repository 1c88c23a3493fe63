"""The four fine-tuning traps: each shown failing with plain Keras, then passing after surgeon."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from surgeon.cli import app

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
runner = CliRunner()


def data(model, count: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((count, *model.inputs[0].shape[1:])).astype("float32")
    y = rng.standard_normal((count, *model.outputs[0].shape[1:])).astype("float32")
    return x, y


def weights_of(layer) -> list[np.ndarray]:
    return [np.array(w) for w in layer.get_weights()]


def unchanged(before: list[np.ndarray], after: list[np.ndarray]) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(before, after))


def small_model(keras, nested: bool):
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    if nested:
        base_in = keras.Input((8, 8, 3))
        base = keras.Model(base_in, keras.layers.Conv2D(4, 3, name="conv")(base_in), name="base")
        x = base(inp)
    else:
        x = keras.layers.Conv2D(4, 3, name="conv")(inp)
    out = keras.layers.Dense(2, name="head")(keras.layers.Flatten()(x))
    model = keras.Model(inp, out)
    model.compile(optimizer="sgd", loss="mean_squared_error")
    return model


@pytest.mark.parametrize("nested", [False, True], ids=["flags-set-after-compile", "nested-model-frozen-after-compile"])
def test_freezing_after_compile_is_ignored_by_plain_keras_and_baked_in_by_surgeon(nested, tmp_path):
    import keras

    model = small_model(keras, nested)
    x, y = data(model)
    model.fit(x, y, verbose=0)
    frozen = model.get_layer("base") if nested else model.get_layer("conv")
    frozen.trainable = False  # after compile() and fit(): the trap
    before = weights_of(frozen)
    model.fit(x, y, verbose=0)
    assert not unchanged(before, weights_of(frozen)), "plain Keras was expected to keep training the 'frozen' layer"

    path, out = tmp_path / "trapped.keras", tmp_path / "frozen.keras"
    model.save(path)
    result = runner.invoke(app, ["freeze", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    fixed = keras.models.load_model(out)
    layer = fixed.get_layer("base") if nested else fixed.get_layer("conv")
    before = weights_of(layer)
    fixed.fit(x, y, verbose=0)
    assert unchanged(before, weights_of(layer))
    assert not unchanged(weights_of(model.get_layer("head")), weights_of(fixed.get_layer("head")))


@pytest.fixture(scope="module")
def prepared_h5(tmp_path_factory):
    out = tmp_path_factory.mktemp("traps") / "ready.h5"
    result = runner.invoke(app, ["prepare", str(FIXTURES / "nested.h5"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_a_compiled_h5_cannot_be_fine_tuned_after_plain_load_but_can_after_surgeon(prepared_h5):
    import keras

    plain = keras.models.load_model(FIXTURES / "nested.h5")
    x = np.random.default_rng(0).standard_normal((4, *plain.inputs[0].shape[1:])).astype("float32")
    y = np.eye(plain.outputs[0].shape[-1], dtype="float32")[[0, 1, 0, 1]]
    with pytest.raises(Exception, match="Unknown variable"):
        plain.fit(x, y, verbose=0)

    fixed = keras.models.load_model(prepared_h5)
    before = weights_of(fixed.get_layer("base"))
    fixed.fit(x, y, verbose=0)
    assert unchanged(before, weights_of(fixed.get_layer("base")))


def test_bn_and_dropout_in_a_frozen_base_change_training_mode_features_until_prepared(tmp_path):
    import keras

    plain = keras.models.load_model(FIXTURES / "nested.keras").get_layer("base")
    x = np.random.default_rng(0).standard_normal((4, *plain.inputs[0].shape[1:])).astype("float32")
    assert not np.allclose(np.asarray(plain(x, training=True)), plain.predict(x, verbose=0), atol=1e-5)

    out = tmp_path / "ready.keras"
    result = runner.invoke(app, ["prepare", str(FIXTURES / "nested.keras"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    fixed = keras.models.load_model(out).get_layer("base")
    np.testing.assert_allclose(np.asarray(fixed(x, training=True)), fixed.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fixed.predict(x, verbose=0), plain.predict(x, verbose=0), rtol=1e-4, atol=1e-4)


def test_verify_fine_tune_reports_the_frozen_dropout_of_the_original_and_passes_the_prepared_file(prepared_h5):
    bad = runner.invoke(app, ["verify", str(FIXTURES / "nested.h5"), str(FIXTURES / "nested.keras"), "--fine-tune"])
    assert bad.exit_code == 1 and "base/base_dropout" in bad.output
    good = runner.invoke(app, ["verify", str(FIXTURES / "nested.h5"), str(prepared_h5), "--fine-tune"])
    assert good.exit_code == 0, good.output


def test_a_model_whose_trainable_part_cannot_move_fails_the_fine_tune_check(tmp_path):
    import keras

    from surgeon.finetune_check import check_fine_tuning

    inp = keras.Input((4,))
    out = keras.layers.Rescaling(0.0)(keras.layers.Dense(3, name="dense")(inp))  # zero gradient into dense
    path = tmp_path / "stuck.keras"
    keras.Model(inp, out).save(path)
    report = check_fine_tuning(str(path))
    assert not report.passed and not report.checks["trainable_moved"]
    assert report.stuck_layers == ["dense"] and report.problems[0].layer == "dense"
