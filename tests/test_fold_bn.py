"""fold-bn against independent references: the original Keras model in inference mode, and numpy.

Every model gets non-trivial BN statistics (gamma ~ U(0.5, 1.5), beta/mean ~ N(0, 0.5),
var ~ U(0.5, 2)) and non-zero biases, so a fold on a wrong axis, a missing epsilon or a BN left
in the wrong mode moves the outputs far beyond the float32 tolerance used here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")
L = keras.layers

from conftest import fixture_path, plain_model  # noqa: E402
from surgeon import math as surgeon_math  # noqa: E402
from surgeon.fold import fold_bn_file, fold_bn_model  # noqa: E402
from surgeon.passes import fold_bn as fold_bn_module  # noqa: E402
from surgeon.rewrite import VerifyOptions  # noqa: E402

TOL = 2e-5  # float32: folds agree to ~1e-7 of the output scale; a wrong axis is off by > 1e-2


# --- helpers ---------------------------------------------------------------------------------


def randomize(model, seed=0):
    """Non-trivial BN statistics and non-zero biases, everywhere (nested models included)."""
    rng = np.random.default_rng(seed)
    for layer in all_layers(model):
        if isinstance(layer, L.BatchNormalization):
            n = layer.moving_mean.shape[0]
            if layer.scale:
                layer.gamma.assign(rng.uniform(0.5, 1.5, n))
            if layer.center:
                layer.beta.assign(rng.normal(0, 0.5, n))
            layer.moving_mean.assign(rng.normal(0, 0.5, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))
        elif getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.5, layer.bias.shape))
    return model


def all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)


def model_of(input_shape, *stack, name="m", frozen=True, seed=0):
    """Input -> stack -> a linear head layer (so the last BN is not itself the model output)."""
    x = inp = keras.Input(input_shape, name="x")
    for layer in stack:
        x = layer(x)
    x = L.Activation("linear", name="head")(x)
    model = keras.Model(inp, x, name=name)
    if frozen:
        for layer in model.layers:
            layer.trainable = False
    return randomize(model, seed)


def inputs_for(model, seed=1, batch=3):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(batch,) + tuple(t.shape[1:])).astype("float32") for t in model.inputs]


def relative_error(actual, expected):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def outputs(model, x, training=False):
    result = model(x if len(x) > 1 else x[0], training=training)
    return [np.asarray(r) for r in (result if isinstance(result, (list, tuple)) else [result])]


def assert_equivalent(original, folded, training_too=True):
    x = inputs_for(original)
    expected = outputs(original, x)
    modes = (False, True) if training_too else (False,)
    for training in modes:
        for got, want in zip(outputs(folded, x, training=training), expected, strict=True):
            assert relative_error(got, want) < TOL, f"training={training}"


def actions(report):
    return {row["layer"]: row["action"] for row in report.changes}


def rows(report):
    return {row["layer"]: row for row in report.changes}


def batch_norms(model):
    return [layer.name for layer in all_layers(model) if isinstance(layer, L.BatchNormalization)]


def fold(model, fold_all=False):
    folded, report = fold_bn_model(model, fold_all=fold_all)
    return folded, report


# --- case 1: BN after a linear layer ---------------------------------------------------------

AFTER = {
    "conv1d": ((9, 3), lambda: L.Conv1D(4, 3, name="k"), -1),
    "conv2d": ((6, 5, 3), lambda: L.Conv2D(4, 3, padding="same", name="k"), -1),
    "conv3d": ((4, 4, 4, 2), lambda: L.Conv3D(3, 2, name="k"), -1),
    "conv2d_groups_2": ((5, 5, 4), lambda: L.Conv2D(6, 3, groups=2, name="k"), -1),
    "conv2d_without_bias": ((6, 6, 3), lambda: L.Conv2D(4, 3, use_bias=False, name="k"), -1),
    "conv2d_channels_first": ((3, 6, 7), lambda: L.Conv2D(4, 3, data_format="channels_first", name="k"), 1),
    "dense": ((6,), lambda: L.Dense(5, name="k"), -1),
    "dense_on_rank_3": ((4, 6), lambda: L.Dense(5, name="k"), -1),
    "depthwise_multiplier_1": ((5, 5, 3), lambda: L.DepthwiseConv2D(3, name="k"), -1),
    "depthwise_multiplier_3": ((5, 5, 3), lambda: L.DepthwiseConv2D(3, depth_multiplier=3, name="k"), -1),
    "depthwise1d_multiplier_2": ((7, 3), lambda: L.DepthwiseConv1D(3, depth_multiplier=2, name="k"), -1),
    "separable1d": ((9, 3), lambda: L.SeparableConv1D(4, 3, depth_multiplier=2, name="k"), -1),
    "separable2d": ((6, 6, 3), lambda: L.SeparableConv2D(5, 3, depth_multiplier=2, name="k"), -1),
    "conv1d_transpose": ((5, 3), lambda: L.Conv1DTranspose(4, 3, strides=2, name="k"), -1),
    "conv2d_transpose": ((4, 4, 3), lambda: L.Conv2DTranspose(5, 3, strides=2, name="k"), -1),
    "conv3d_transpose": ((3, 3, 3, 2), lambda: L.Conv3DTranspose(3, 2, strides=2, name="k"), -1),
    "conv2d_transpose_channels_first": (
        (3, 4, 4), lambda: L.Conv2DTranspose(5, 3, data_format="channels_first", name="k"), 1),
}


@pytest.mark.parametrize("case", list(AFTER))
def test_bn_after_a_linear_layer_is_folded_into_its_kernel(case):
    shape, make, axis = AFTER[case]
    original = model_of(shape, make(), L.BatchNormalization(axis=axis, name="bn"))
    folded, report = fold(original)
    assert rows(report)["bn"]["action"] == "folded-after" and rows(report)["bn"]["into"] == ["k"]
    assert batch_norms(folded) == []
    assert type(folded.get_layer("k")) is type(original.get_layer("k"))  # the conv keeps its name and kind
    assert folded.get_layer("k").use_bias
    assert_equivalent(original, folded)


def test_dense_then_bn_matches_a_numpy_reference():
    original = model_of((6,), L.Dense(4, name="d"), L.BatchNormalization(epsilon=0.01, name="bn"))
    folded, _ = fold(original)
    kernel, bias = original.get_layer("d").get_weights()
    gamma, beta, mean, var = original.get_layer("bn").get_weights()
    x = inputs_for(original)[0].astype(np.float64)
    expected = (x @ kernel + bias - mean) / np.sqrt(var + 0.01) * gamma + beta
    assert relative_error(outputs(folded, [x.astype("float32")])[0], expected) < TOL


def test_activation_inside_the_conv_blocks_folding_after_it():
    original = model_of((6, 6, 3), L.Conv2D(4, 3, activation="relu", name="k"), L.BatchNormalization(name="bn"))
    folded, report = fold(original)
    assert actions(report) == {"bn": "affine"}
    assert "activation 'relu'" in rows(report)["bn"]["reason"]
    assert isinstance(folded.get_layer("bn"), L.Rescaling)
    assert_equivalent(original, folded)


def test_conv_output_used_beside_the_bn_blocks_folding():
    inp = keras.Input((6, 6, 3))
    conv = L.Conv2D(4, 3, padding="same", name="k")(inp)
    out = L.Add(name="add")([conv, L.BatchNormalization(name="bn")(conv)])
    original = randomize(keras.Model(inp, out))
    original.trainable = False
    folded, report = fold(original)
    assert actions(report) == {"bn": "affine"}
    assert_equivalent(original, folded)


def test_bn_on_a_spatial_axis_is_not_folded_into_the_conv():
    # axis=1 of a channels_last tensor is the height (8 rows), not the 4 output channels.
    original = model_of((8, 6, 3), L.Conv2D(4, 3, padding="same", name="k"), L.BatchNormalization(axis=1, name="bn"))
    folded, report = fold(original)
    assert actions(report) == {"bn": "affine"}
    assert "not the channel axis" in rows(report)["bn"]["reason"]
    assert_equivalent(original, folded)


@pytest.mark.parametrize("data_format, shape", [("channels_first", (3, 6, 6)), ("channels_last", (6, 6, 3))])
def test_bn_on_axis_1_as_long_as_the_last_axis_is_left_because_keras_misplaces_offsets(data_format, shape):
    # Output (4, 4, 4) / (6, 6, 6): Keras' TF `add` would put any per-channel offset on the last axis.
    filters = 4 if data_format == "channels_first" else 6
    padding = "valid" if data_format == "channels_first" else "same"
    original = model_of(shape, L.Conv2D(filters, 3, padding=padding, data_format=data_format, name="k"),
                        L.BatchNormalization(axis=1, name="bn"))
    folded, report = fold(original, fold_all=True)
    assert actions(report) == {"bn": "left"} and "last axis" in rows(report)["bn"]["reason"]
    assert_equivalent(original, folded, training_too=False)


# --- case 2: BN before a layer ---------------------------------------------------------------

BEFORE = {
    "dense": ((6,), lambda: L.Dense(4, name="k"), -1),
    "dense_on_rank_3": ((3, 6), lambda: L.Dense(4, name="k"), -1),
    "conv_1x1_same_strided": ((6, 6, 3), lambda: L.Conv2D(4, 1, strides=2, padding="same", name="k"), -1),
    "conv_3x3_valid_dilated": ((9, 9, 3), lambda: L.Conv2D(4, 3, dilation_rate=2, name="k"), -1),
    "conv_valid_groups_2": ((6, 6, 4), lambda: L.Conv2D(6, 3, groups=2, name="k"), -1),
    "conv1d_valid": ((9, 3), lambda: L.Conv1D(4, 3, strides=2, name="k"), -1),
    "conv_valid_channels_first": ((3, 6, 7), lambda: L.Conv2D(4, 3, data_format="channels_first", name="k"), 1),
    "depthwise_valid_multiplier_2": ((6, 6, 3), lambda: L.DepthwiseConv2D(3, depth_multiplier=2, name="k"), -1),
}


@pytest.mark.parametrize("case", list(BEFORE))
def test_bn_before_a_layer_is_folded_into_it_where_exact(case):
    shape, make, axis = BEFORE[case]
    original = model_of(shape, L.BatchNormalization(axis=axis, name="bn"), make())
    folded, report = fold(original)
    assert rows(report)["bn"]["action"] == "folded-before" and rows(report)["bn"]["into"] == ["k"]
    assert batch_norms(folded) == []
    assert_equivalent(original, folded)


def test_a_layer_between_two_bns_takes_both_folds():
    original = model_of((7, 7, 3), L.BatchNormalization(name="bn_in"), L.Conv2D(4, 3, name="k"), L.BatchNormalization(name="bn_out"))
    folded, report = fold(original)
    assert actions(report) == {"bn_in": "folded-before", "bn_out": "folded-after"}
    assert [type(l).__name__ for l in folded.layers] == ["InputLayer", "Conv2D", "Activation"]
    assert_equivalent(original, folded)


FLATTEN = {
    "channels_last": ((3, 4, 5), -1, "channels_last"),
    "channels_first_tensor": ((5, 3, 4), 1, "channels_last"),
    "channels_first_flatten": ((5, 3, 4), 1, "channels_first"),
}


@pytest.mark.parametrize("case", list(FLATTEN))
def test_bn_flatten_dense_is_folded_into_the_dense(case):
    shape, axis, data_format = FLATTEN[case]
    original = model_of(shape, L.BatchNormalization(axis=axis, name="bn"), L.Flatten(data_format=data_format), L.Dense(3, name="k"))
    folded, report = fold(original)
    assert rows(report)["bn"]["action"] == "folded-before" and rows(report)["bn"]["into"] == ["k"]
    assert_equivalent(original, folded)


def test_bn_feeding_two_valid_convs_is_folded_into_both():
    inp = keras.Input((7, 7, 3))
    bn = L.BatchNormalization(name="bn")(inp)
    out = L.Concatenate()([L.Conv2D(4, 3, name="a")(bn), L.Cropping2D(1)(L.Conv2D(2, 1, padding="same", name="b")(bn))])
    original = randomize(keras.Model(inp, out))
    original.trainable = False
    folded, report = fold(original)
    assert rows(report)["bn"]["action"] == "folded-before" and sorted(rows(report)["bn"]["into"]) == ["a", "b"]
    assert_equivalent(original, folded)


@pytest.mark.parametrize("padding_of_second", ["same", "causal"])
def test_bn_feeding_a_padded_conv_is_made_affine(padding_of_second):
    inp = keras.Input((9, 3))
    bn = L.BatchNormalization(name="bn")(inp)
    out = L.Add()([L.Conv1D(4, 3, padding=padding_of_second, name="a")(bn), L.Conv1D(4, 1, name="b")(bn)])
    original = randomize(keras.Model(inp, out))
    original.trainable = False
    folded, report = fold(original)
    assert actions(report) == {"bn": "affine"}
    assert f"padding '{padding_of_second}'" in rows(report)["bn"]["reason"]
    assert_equivalent(original, folded)


def test_bn_before_a_transposed_conv_is_made_affine():
    original = model_of((4, 4, 3), L.BatchNormalization(name="bn"), L.Conv2DTranspose(4, 3, name="k"))
    folded, report = fold(original)
    assert actions(report) == {"bn": "affine"}
    assert_equivalent(original, folded)


# --- case 3: everything else becomes an exact, weightless affine layer -----------------------


def test_bn_after_an_activation_becomes_a_float32_rescaling():
    original = model_of((6, 6, 3), L.Conv2D(4, 3, name="k"), L.ReLU(), L.BatchNormalization(name="bn"), L.ReLU())
    folded, report = fold(original)
    assert actions(report) == {"bn": "affine"}
    layer = folded.get_layer("bn")
    assert isinstance(layer, L.Rescaling) and layer.weights == [] and layer.dtype_policy.name == "float32"
    assert_equivalent(original, folded)


def test_bn_after_add_on_rank_2_is_affine():
    inp = keras.Input((5,))
    x = L.Add()([L.Dense(4)(inp), L.Dense(4)(inp)])
    original = randomize(keras.Model(inp, L.ReLU()(L.BatchNormalization(name="bn")(x))))
    original.trainable = False
    folded, report = fold(original)
    assert actions(report) == {"bn": "affine"}
    assert_equivalent(original, folded)


def test_a_bn_shared_by_two_calls_becomes_one_affine_layer():
    inp = keras.Input((5, 5, 3))
    bn = L.BatchNormalization(name="bn")
    left, right = L.Conv2D(3, 1, name="left")(inp), L.Conv2D(3, 1, name="right")(inp)
    original = randomize(keras.Model(inp, L.Add()([bn(left), bn(right)])))
    original.trainable = False
    folded, report = fold(original)
    assert actions(report) == {"bn": "affine"}
    assert "called 2 times" in rows(report)["bn"]["reason"]
    assert_equivalent(original, folded)


def test_a_bn_that_is_the_model_output_keeps_the_output_name():
    inp = keras.Input((6,))
    original = randomize(keras.Model(inp, L.BatchNormalization(name="score")(L.Dense(3, name="d")(inp))))
    original.trainable = False
    folded, report = fold(original)
    assert actions(report) == {"score": "affine"}
    assert folded.output_names == ["score"]
    assert_equivalent(original, folded)


# --- which BNs: frozen by default, all with fold_all -----------------------------------------


def test_trainable_bns_are_left_by_default_and_folded_with_all():
    original = model_of((6, 6, 3), L.Conv2D(4, 3, name="k"), L.BatchNormalization(name="bn"), frozen=False)
    folded, report = fold(original)
    assert actions(report) == {"bn": "left"} and "--all" in rows(report)["bn"]["reason"]
    assert batch_norms(folded) == ["bn"]
    folded, report = fold(original, fold_all=True)
    assert actions(report) == {"bn": "folded-after"}
    assert_equivalent(original, folded)


def test_frozen_bn_after_a_trainable_conv_becomes_affine_so_fine_tuning_is_unchanged():
    original = model_of((6, 6, 3), L.Conv2D(4, 3, name="k"), L.BatchNormalization(name="bn"), frozen=False)
    original.get_layer("bn").trainable = False
    folded, report = fold(original)
    assert actions(report) == {"bn": "affine"} and "'k' is trainable" in rows(report)["bn"]["reason"]
    assert folded.get_layer("k").trainable
    assert_equivalent(original, folded)


def test_bn_frozen_only_through_its_enclosing_model_is_folded():
    base = model_of((6, 6, 3), L.Conv2D(4, 3, name="k"), L.BatchNormalization(name="bn"), name="base", frozen=False)
    inp = keras.Input((6, 6, 3))
    outer = keras.Model(inp, L.Dense(2, name="top")(base(inp)), name="outer")
    base.trainable = False
    for layer in base.layers:  # Keras 3 pushes the flag down; undo it so only the model says so
        layer.trainable = True
    folded, report = fold(outer)
    assert actions(report) == {"base/bn": "folded-after"}
    assert_equivalent(outer, folded)


# --- case 4: nested models -------------------------------------------------------------------


@pytest.fixture(scope="module")
def folded_nested(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("nested") / "folded.h5")
    return fold_bn_file(fixture_path("nested.h5"), out), out


def test_nested_model_is_folded_inside_keeping_names_nesting_and_flags(folded_nested):
    result, out = folded_nested
    assert result.passed and result.output == out
    assert actions(result.passes[0]) == {"base/base_bn1": "folded-after", "base/base_bn2": "folded-after"}
    original, folded = plain_model("nested.h5"), keras.models.load_model(out)
    base = folded.get_layer("base")
    assert isinstance(base, keras.Model) and not base.trainable
    assert [l.name for l in base.layers] == [l.name for l in original.get_layer("base").layers if "bn" not in l.name]
    for layer in base.layers:
        assert layer.trainable == original.get_layer("base").get_layer(layer.name).trainable
    assert folded.get_layer("head").trainable
    x = inputs_for(original)
    assert relative_error(outputs(folded, x)[0], outputs(original, x)[0]) < TOL


def test_nested_model_output_is_compiled_and_fine_tunes(folded_nested):
    _, out = folded_nested
    folded = keras.models.load_model(out)
    assert folded.compiled and type(folded.optimizer).__name__ == "Adam"
    frozen_before = [np.array(w) for w in folded.get_layer("base").weights]
    x = inputs_for(folded, batch=4)[0]
    folded.fit(x, np.eye(folded.outputs[0].shape[-1])[[0, 1, 0, 1]], epochs=1, verbose=0)
    for before, after in zip(frozen_before, folded.get_layer("base").weights):
        np.testing.assert_array_equal(before, np.asarray(after))


# --- case 5: shared layers, multi-input / multi-output ---------------------------------------


def test_bns_after_a_shared_conv_are_made_affine_not_folded(tmp_path):
    out = str(tmp_path / "shared.keras")
    result = fold_bn_file(fixture_path("shared_layer.keras"), out, fold_all=True)
    assert result.passed
    assert actions(result.passes[0]) == {"bn_left": "affine", "bn_right": "affine"}
    assert "'shared_conv' is called 2 times" in rows(result.passes[0])["bn_left"]["reason"]
    folded, original = keras.models.load_model(out), plain_model("shared_layer.keras")
    assert batch_norms(folded) == []
    for got, want in zip(outputs(folded, inputs_for(original)), outputs(original, inputs_for(original))):
        assert relative_error(got, want) < TOL


def test_multi_input_multi_output_model_is_folded_and_every_output_checked(tmp_path):
    out = str(tmp_path / "multi.h5")
    result = fold_bn_file(fixture_path("multi_io.h5"), out, fold_all=True)
    assert result.passed and actions(result.passes[0]) == {"bn1": "folded-after"}
    assert {c.name for c in result.verification.checks} == {"class_out", "reg_out"}
    folded, original = keras.models.load_model(out), plain_model("multi_io.h5")
    x = inputs_for(original)
    for got, want in zip(outputs(folded, x), outputs(original, x), strict=True):
        assert relative_error(got, want) < TOL


# --- case 6: mixed precision -----------------------------------------------------------------


def test_mixed_float16_model_is_folded_in_float64_and_stored_in_float32():
    inp = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, dtype="mixed_float16", name="k")(inp)
    x = L.BatchNormalization(dtype="mixed_float16", name="bn")(x)
    x = L.ReLU(dtype="mixed_float16")(x)
    x = L.BatchNormalization(dtype="mixed_float16", name="bn_affine")(x)
    original = randomize(keras.Model(inp, L.Activation("linear", dtype="float32")(x)))
    original.trainable = False
    folded, report = fold(original)
    assert actions(report) == {"bn": "folded-after", "bn_affine": "affine"}
    assert folded.get_layer("k").kernel.dtype == "float32" and folded.get_layer("k").dtype_policy.name == "mixed_float16"
    assert folded.get_layer("bn_affine").dtype_policy.name == "float32"
    x = inputs_for(original)
    # float16 compute: both models round to ~1e-3 of the scale, differently.
    assert relative_error(outputs(folded, x)[0], outputs(original, x)[0]) < 5e-3


def test_mixed_precision_file_verifies_with_a_float16_tolerance_and_says_so(tmp_path):
    inp = keras.Input((8, 8, 3))
    x = L.BatchNormalization(dtype="mixed_float16", name="bn")(L.Conv2D(8, 3, dtype="mixed_float16", name="k")(inp))
    original = randomize(keras.Model(inp, L.Dense(3, dtype="float32", name="out")(L.ReLU(dtype="mixed_float16")(x))))
    original.trainable = False
    source, out = str(tmp_path / "mp.h5"), str(tmp_path / "folded.h5")
    original.save(source)
    result = fold_bn_file(source, out)
    assert result.passed and result.verification.rtol == 1e-2
    assert 0 < result.verification.max_rel < 1e-2
    assert any("float16" in note for note in result.notes)
    strict = fold_bn_file(source, out, force=True, verify=VerifyOptions(rtol=0.0, atol=0.0))
    assert not strict.passed  # the float16 error is real, and an explicit tolerance is honoured


# --- verification: catches wrong folds, writes nothing ---------------------------------------


def test_a_fold_on_the_wrong_axis_fails_verification_and_writes_nothing(tmp_path, monkeypatch):
    # A transposed kernel is (k, k, out, in): treating it as a conv scales the *input* axis.
    # With in == out the shapes fit, so only the numbers can tell.
    model = model_of((4, 4, 4), L.Conv2DTranspose(4, 3, name="k"), L.BatchNormalization(name="bn"))
    source, out = str(tmp_path / "m.h5"), str(tmp_path / "out.h5")
    model.save(source)
    wrong = fold_bn_module.Pattern(("conv", "kernel"), None, fold_bn_module._data_format_axis)
    monkeypatch.setitem(fold_bn_module.PATTERNS, "Conv2DTranspose", wrong)
    result = fold_bn_file(source, out)
    assert not result.passed and result.output is None and not os.path.exists(out)
    assert result.verification.max_rel > 1e-3
    monkeypatch.undo()
    assert fold_bn_file(source, out).passed


def test_a_fold_without_epsilon_fails_verification(tmp_path, monkeypatch):
    model = model_of((6, 6, 3), L.Conv2D(4, 3, name="k"), L.BatchNormalization(name="bn"))
    source, out = str(tmp_path / "m.keras"), str(tmp_path / "out.keras")
    model.save(source)
    real = surgeon_math.bn_affine
    monkeypatch.setattr(surgeon_math, "bn_affine", lambda g, b, m, v, eps: real(g, b, m, v, 0.0))
    result = fold_bn_file(source, out)
    assert not result.passed and not os.path.exists(out)


def test_training_mode_is_checked_only_when_nothing_mode_dependent_is_left(tmp_path):
    clean = fold_bn_file(fixture_path("dense_bn.h5"), str(tmp_path / "a.h5"), fold_all=True)
    assert {c.mode for c in clean.verification.checks} == {"inference", "training"}
    with_dropout = fold_bn_file(fixture_path("compiled_frozen.h5"), str(tmp_path / "b.h5"), fold_all=True)
    assert {c.mode for c in with_dropout.verification.checks} == {"inference"}
    assert any("training-mode check skipped" in note and "drop" in note for note in with_dropout.notes)


# --- the command -----------------------------------------------------------------------------


def run_cli(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "surgeon.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})


def test_cli_folds_writes_json_and_inspect_finds_no_bn_hazard(tmp_path):
    out = tmp_path / "folded.keras"
    done = run_cli("fold-bn", fixture_path("convbn.h5"), "-o", str(out), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["passed"] and report["output"] == str(out)
    assert {row["action"] for row in report["passes"][0]["changes"]} == {"folded-after", "left"}
    inspected = json.loads(run_cli("inspect", str(out), "--json").stdout)
    assert "frozen-batchnorm" not in {h["kind"] for h in inspected["hazards"]}


def test_cli_no_verify_h5_to_h5_never_imports_tensorflow(tmp_path):
    out = tmp_path / "folded.h5"
    code = (
        "import sys; from surgeon.cli import app\n"
        f"try: app(['fold-bn', {fixture_path('convbn.h5')!r}, '-o', {str(out)!r}, '--no-verify', '--all'])\n"
        "except SystemExit as e: assert e.code == 0, e.code\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    folded, original = keras.models.load_model(out), plain_model("convbn.h5")
    assert batch_norms(folded) == []
    x = inputs_for(original)
    assert relative_error(outputs(folded, x)[0], outputs(original, x)[0]) < TOL


def test_cli_verification_failure_exits_1_and_writes_nothing(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from surgeon.cli import app

    model = model_of((6, 6, 3), L.Conv2D(4, 3, name="k"), L.BatchNormalization(name="bn"))
    source, out = str(tmp_path / "m.h5"), tmp_path / "out.h5"
    model.save(source)
    real = surgeon_math.fold_bn_after
    monkeypatch.setattr(surgeon_math, "fold_bn_after", lambda k, b, s, t, layout: real(k, b, s[::-1], t, layout))
    result = CliRunner().invoke(app, ["fold-bn", source, "-o", str(out)])
    assert result.exit_code == 1 and not out.exists()
    assert "nothing written" in result.output


def test_cli_refuses_an_existing_output_with_exit_2(tmp_path):
    out = tmp_path / "exists.h5"
    out.write_bytes(b"keep me")
    done = run_cli("fold-bn", fixture_path("convbn.h5"), "-o", str(out), "--no-verify")
    assert done.returncode == 2 and "--force" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert out.read_bytes() == b"keep me"


def test_compiled_input_gives_a_compiled_output_that_fine_tunes(tmp_path):
    out = str(tmp_path / "compiled.keras")
    assert fold_bn_file(fixture_path("compiled_frozen.keras"), out).passed
    folded = keras.models.load_model(out)
    assert folded.compiled and type(folded.optimizer).__name__ == "SGD"
    x = inputs_for(folded, batch=4)[0]
    history = folded.fit(x, np.zeros((4,) + tuple(folded.outputs[0].shape[1:])), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_verification_uses_fewer_samples_only_for_large_inputs():
    from surgeon.rewrite import verification_samples
    from surgeon.io import read_model

    spec = read_model(fixture_path("convbn.h5"), values=False)
    assert verification_samples(spec) == 8  # 16x16x3
    spec.config["config"]["layers"][0]["config"]["batch_shape"] = [None, 224, 224, 3]
    assert verification_samples(spec) == 2
    spec.config["config"]["layers"][0]["config"]["batch_shape"] = [None, 112, 112, 3]
    assert verification_samples(spec) == 8


@pytest.mark.parametrize("name, expected_actions", [
    # Keras 2 names a DepthwiseConv kernel "depthwise_kernel".
    ("k2_depthwise", {"dw_bn": "folded-after", "sep_bn": "folded-after"}),
    # A converted Sequential records no tensor shapes; the conv's kernel_size gives the rank.
    ("k2_sequential", {"bn": "affine"}),
])
def test_keras2_files_fold_and_match_tf_keras_outputs(tmp_path, name, expected_actions):
    out = str(tmp_path / f"{name}.h5")
    result = fold_bn_file(fixture_path(f"keras2/{name}.h5"), out, fold_all=True)
    assert result.passed and actions(result.passes[0]) == expected_actions
    expected = np.load(fixture_path(f"keras2/{name}.expected.npz"))  # computed by tf.keras 2
    folded = keras.models.load_model(out, compile=False)
    assert batch_norms(folded) == []
    assert relative_error(outputs(folded, [expected["x"]])[0], expected["y"]) < TOL
