"""Verification holds about one model at a time (issue 15): the reference is reduced to its outputs
before the written file is loaded, and large inputs run one image per forward call."""

from __future__ import annotations

import numpy as np

from conftest import fixture_path, plain_model
from surgeon.io import read_model, write_model
from surgeon.passes.fold_bn import fold_bn
from surgeon.rewrite import VerifyOptions, verify_against
from surgeon.verify import check_file, reference_outputs, run


class CountingModel:
    """A callable model that records the batch size of every call."""

    def __init__(self, model):
        self.model, self.batches = model, []

    def __call__(self, x, training=False):
        self.batches.append(x.shape[0])
        return self.model(x, training=training)


def test_large_inputs_run_one_image_per_call_with_the_same_outputs():
    import keras

    inputs = keras.Input((224, 224, 3))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3, strides=8)(inputs)))
    x = np.random.default_rng(0).normal(size=(3, 224, 224, 3)).astype("float32")
    counting = CountingModel(model)
    (outputs,) = run(counting, [x])
    assert counting.batches == [1, 1, 1]
    np.testing.assert_allclose(outputs, np.asarray(model(x)), rtol=1e-6, atol=1e-6)
    small = CountingModel(plain_model("dense_bn.keras"))
    run(small, [np.zeros((8, 10), dtype="float32")])
    assert small.batches == [8]


def test_verify_against_releases_the_original_weights_and_still_passes(tmp_path):
    original = read_model(fixture_path("convbn.h5"))
    folded, _ = fold_bn(original)
    out = str(tmp_path / "folded.h5")
    write_model(folded, out)
    report = verify_against(original, out, VerifyOptions(samples=4, rtol=1e-4, training_check=False))
    assert report.passed and report.max_rel < 1e-5
    assert original.weights == {}  # they lived in the reference model, which is gone too


def test_outputs_kept_without_the_model_still_catch_a_wrong_file(tmp_path):
    """check_file compares with the reference's outputs alone: a different model must fail."""
    expected = reference_outputs(plain_model("dense_bn.keras"), samples=4)
    report = check_file(expected, fixture_path("dense_bn.h5"))
    assert report.passed and report.max_abs == 0.0
    spec = read_model(fixture_path("dense_bn.h5"))
    spec.weights["d3"]["bias"] = spec.weights["d3"]["bias"] + 0.5
    wrong = str(tmp_path / "wrong.h5")
    write_model(spec, wrong)
    report = check_file(expected, wrong)
    assert not report.passed and abs(report.max_abs - 0.5) < 1e-5


def test_one_image_in_training_mode_catches_a_layer_that_acts_in_training(tmp_path, monkeypatch):
    """The training-mode run of a large input takes one forward call (one image): an active
    Dropout left in the written file still fails the check."""
    import keras

    import surgeon.verify as verify

    inputs = keras.Input((224, 224, 3))
    x = keras.layers.Conv2D(4, 3, strides=8, name="conv")(inputs)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    outputs = keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    path = str(tmp_path / "dropout.keras")
    keras.Model(inputs, outputs).save(path)
    calls, real_run = [], verify.run

    def recorded_run(model, arrays, **options):
        calls.append((options.get("training", False), arrays[0].shape[0]))
        return real_run(model, arrays, **options)

    monkeypatch.setattr(verify, "run", recorded_run)
    expected = reference_outputs(keras.models.load_model(path), samples=3)
    report = check_file(expected, path, training_check=True)
    assert [c.passed for c in report.checks if c.mode == "inference"] == [True]
    assert [c.passed for c in report.checks if c.mode == "training"] == [False]
    assert (True, 1) in calls and (True, 3) not in calls  # samples in training mode: one
