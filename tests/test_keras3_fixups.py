"""Rewrites of Keras 3 configs that plain load_model cannot load (surgeon.io.keras3_fixups).

Each test builds a tiny model with the offending construct, saves it (.h5 unless said otherwise),
reads the config with h5py / zipfile, applies fix_keras3_config + fix_keras3_weights, rebuilds with
keras.Model.from_config and compares with the ORIGINAL in-memory model (independent reference).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from surgeon.io.keras3_fixups import Fixup, fix_keras3_config, fix_keras3_weights

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")


# ---------------------------------------------------------------------------------- helpers


def read_config(path) -> dict:
    path = str(path)
    if path.endswith(".h5"):
        import h5py

        with h5py.File(path, "r") as f:
            raw = f.attrs["model_config"]
        return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read("config.json"))


def leaf_weights(model, out=None) -> dict:
    out = {} if out is None else out
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            leaf_weights(layer, out)
        elif layer.weights:
            out[layer.name] = layer.get_weights()
    return out


def set_leaf_weights(model, weights) -> None:
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            set_leaf_weights(layer, weights)
        elif layer.weights:
            layer.set_weights(weights[layer.name])


def randomize(model, seed=0) -> None:
    """Non-trivial weights (LayerScale's gamma starts at a constant)."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in model.get_weights()])


def fix_and_rebuild(model, tmp_path, fmt="h5"):
    """Save `model`, fix its stored config, rebuild, map weights; return (new model, fixups)."""
    path = tmp_path / f"m.{fmt}"
    model.save(path)
    cfg = read_config(path)
    before = copy.deepcopy(cfg)
    fixed, fixups = fix_keras3_config(cfg)
    assert cfg == before, "fix_keras3_config must not mutate its input"
    new = keras.Model.from_config(copy.deepcopy(fixed["config"]))  # from_config pops keys
    set_leaf_weights(new, fix_keras3_weights(fixups, leaf_weights(model)))
    return new, fixups, fixed


def assert_same(model, new, x, rtol=1e-6):
    ref = np.asarray(model(x, training=False))
    out = np.asarray(new(x, training=False))
    np.testing.assert_allclose(out, ref, rtol=rtol, atol=rtol * float(np.max(np.abs(ref))))


def class_names(cfg) -> list[str]:
    out = []
    for layer in cfg["config"]["layers"]:
        out.append(layer["class_name"])
        if isinstance(layer.get("config"), dict) and "layers" in layer["config"]:
            out.extend(class_names(layer))
    return out


def x_of(shape, seed=1):
    return np.random.default_rng(seed).standard_normal((2,) + tuple(shape)).astype("float32")


# ---------------------------------------------------------------------------------- LayerScale


@pytest.mark.parametrize("shape", [(6,), (5, 6), (4, 4, 6), (2, 2, 2, 6)])
def test_layer_scale(tmp_path, shape):
    from keras.src.applications.convnext import LayerScale

    inp = keras.Input(shape)
    y = keras.layers.Dense(6, name="pw")(inp)
    y = LayerScale(1e-6, 6, name="ls")(y)
    model = keras.Model(inp, y)
    randomize(model)
    new, fixups, fixed = fix_and_rebuild(model, tmp_path)
    assert [(f.layer, f.what, f.applied) for f in fixups] == [("ls", "LayerScale -> EinsumDense", True)]
    assert "LayerScale" not in class_names(fixed)
    (kernel,) = new.get_layer("ls").trainable_weights  # gamma: same shape, still trainable
    assert tuple(kernel.shape) == (6,)
    assert_same(model, new, x_of(shape))


def test_layer_scale_keras_format_and_nested(tmp_path):
    """.keras config.json dialect, LayerScale inside a nested model; result saved and reloaded."""
    from keras.src.applications.convnext import LayerScale

    i = keras.Input((4, 4, 3))
    inner = keras.Model(i, LayerScale(0.1, 3, name="ls")(keras.layers.Conv2D(3, 1)(i)), name="inner")
    o = keras.Input((4, 4, 3))
    model = keras.Model(o, keras.layers.Dense(2, name="head")(inner(o)), name="outer")
    randomize(model)
    new, fixups, fixed = fix_and_rebuild(model, tmp_path, fmt="keras")
    assert [(f.path, f.layer, f.qualified_name) for f in fixups] == [(("inner",), "ls", "inner/ls")]
    ls = next(l for l in fixed["config"]["layers"][1]["config"]["layers"] if l["name"] == "ls")
    assert ls["module"] == "keras.layers" and ls["class_name"] == "EinsumDense"
    x = x_of((4, 4, 3))
    assert_same(model, new, x)
    for fmt in ("h5", "keras"):  # the fixed model round-trips through plain load_model
        new.save(tmp_path / f"fixed.{fmt}")
        assert_same(model, keras.models.load_model(tmp_path / f"fixed.{fmt}", compile=False), x)


@pytest.mark.parametrize("fmt", ["h5", "keras"])
def test_layer_scale_in_sequential(tmp_path, fmt):
    """Sequential configs carry no inbound nodes (and .h5 no shapes): the rewrite needs neither."""
    from keras.src.applications.convnext import LayerScale

    model = keras.Sequential([keras.Input((4, 3)), keras.layers.Dense(3), LayerScale(0.5, 3, name="ls")])
    randomize(model)
    model.save(tmp_path / f"m.{fmt}")
    fixed, fixups = fix_keras3_config(read_config(tmp_path / f"m.{fmt}"))
    assert [f.what for f in fixups] == ["LayerScale -> EinsumDense"]
    new = keras.Sequential.from_config(copy.deepcopy(fixed["config"]))
    w = fix_keras3_weights(fixups, {l.name: l.get_weights() for l in model.layers})
    for layer in new.layers:
        layer.set_weights(w[layer.name])
    assert_same(model, new, x_of((4, 3)))


def test_weights_qualified_key_wins():
    f = Fixup("ls", "some rewrite", "", ("inner",), ("ls",), "same", {})
    w = {"ls": [np.zeros(2)], "inner/ls": [np.array([1.0, 2.0])], "other": [np.ones(3)]}
    out = fix_keras3_weights([f], w)
    # The weight map ran on the nested layer's entry (a new list), not on the top-level "ls".
    assert out["inner/ls"] is not w["inner/ls"] and out["inner/ls"][0] is w["inner/ls"][0]
    assert out["ls"] is w["ls"] and out["other"] is w["other"]


# ---------------------------------------------------------------------------------- CustomScaleLayer


def test_custom_scale_layer(tmp_path):
    from keras.src.applications.inception_resnet_v2 import CustomScaleLayer

    inp = keras.Input((4, 4, 3))
    a = keras.layers.Conv2D(4, 1, name="a")(inp)
    b = keras.layers.Conv2D(4, 1, name="b")(inp)
    # a layer already named like the helper layer: the new name must not collide
    b = keras.layers.Activation("linear", name="cs_scale")(b)
    y = CustomScaleLayer(0.17, name="cs")([a, b])
    model = keras.Model(inp, keras.layers.Activation("relu", name="ac")(y))
    new, fixups, fixed = fix_and_rebuild(model, tmp_path)
    assert [(f.what, f.new_layers) for f in fixups] == [
        ("CustomScaleLayer -> Rescaling + Add", ("cs_scale_1", "cs"))
    ]
    assert [new.get_layer(n).__class__.__name__ for n in ("cs_scale_1", "cs")] == ["Rescaling", "Add"]
    assert_same(model, new, x_of((4, 4, 3)))


# ---------------------------------------------------------------------------------- StochasticDepth


def test_stochastic_depth(tmp_path):
    from keras.src.applications.convnext import StochasticDepth

    inp = keras.Input((4, 4, 3))
    y = keras.layers.Conv2D(3, 1)(inp)
    y = keras.layers.Add()([inp, StochasticDepth(0.25, name="sd")(y)])
    model = keras.Model(inp, y)
    new, fixups, _ = fix_and_rebuild(model, tmp_path)
    assert [f.what for f in fixups] == ["StochasticDepth -> Dropout(per-sample noise_shape)"]
    drop = new.get_layer("sd")
    assert drop.rate == 0.25 and list(drop.noise_shape) == [None, 1, 1, 1]
    assert_same(model, new, x_of((4, 4, 3)))
    # training: whole samples dropped or kept (scaled by 1/(1-rate)), like StochasticDepth
    z = np.ones((64, 2, 2, 3), "float32")
    out = np.asarray(drop(z, training=True)).reshape(64, -1)
    assert np.all(np.isclose(out, 0.0) | np.isclose(out, 1 / 0.75))
    assert 0 < np.count_nonzero(out[:, 0]) < 64
    assert all(len(np.unique(row)) == 1 for row in out)


# ---------------------------------------------------------------------------------- bare ops


def test_ops_with_constants_and_tensors(tmp_path):
    """MobileNetV3's hard_sigmoid (relu6(x + 3) * (1/6)) and friends: .h5 cannot load these."""
    inp = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(3, 1, name="c")(inp)
    h = keras.layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)  # Add op, Multiply op
    t = 2.5 - h  # Subtract op, constant first
    t = t - 0.5  # Subtract op, constant second
    t = t / 4.0  # TrueDivide by a power of two
    t = -t  # Negative
    t = 3 + t  # Add op, int constant first
    u = (x + h) - (x * t)  # two-tensor ops
    v = keras.layers.Multiply(name="merge_mul")([u, h])  # a real merge layer: untouched
    model = keras.Model(inp, v)
    # plain Keras cannot load it from .h5: the reason for the rewrite
    model.save(tmp_path / "orig.h5")
    with pytest.raises(Exception):
        keras.models.load_model(tmp_path / "orig.h5", compile=False)

    new, fixups, fixed = fix_and_rebuild(model, tmp_path)
    whats = sorted(f.what for f in fixups)
    assert all(f.applied for f in fixups)
    assert whats.count("op Add -> Rescaling") == 2 and "op Negative -> Rescaling" in whats
    assert {"op Add -> Add layer", "op Subtract -> Subtract layer",
            "op Multiply -> Multiply layer", "op TrueDivide -> Rescaling"} <= set(whats)
    assert "merge_mul" not in [f.layer for f in fixups]
    assert not {"TrueDivide", "Negative"} & set(class_names(fixed))
    x = x_of((4, 4, 3))
    assert_same(model, new, x)
    new.save(tmp_path / "fixed.h5")
    assert_same(model, keras.models.load_model(tmp_path / "fixed.h5", compile=False), x)


def test_inexact_op_is_reported_not_rewritten(tmp_path):
    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.Dense(3)(inp) / 3.0)
    model.save(tmp_path / "m.keras")
    fixed, fixups = fix_keras3_config(read_config(tmp_path / "m.keras"))
    assert len(fixups) == 1 and not fixups[0].applied and "TrueDivide" in fixups[0].what
    assert "TrueDivide" in class_names(fixed)  # left as is: .keras still loads it


def test_mobilenet_v3_style_block(tmp_path):
    """A tiny squeeze-excite block with hard_sigmoid, the construct MobileNetV3 uses."""
    from keras.src.applications.mobilenet_v3 import _se_block

    inp = keras.Input((4, 4, 8))
    model = keras.Model(inp, _se_block(inp, 8, 0.25, "blk_"))
    new, fixups, fixed = fix_and_rebuild(model, tmp_path)
    assert {f.what for f in fixups} == {"op Add -> Rescaling", "op Multiply -> Rescaling"}
    assert_same(model, new, x_of((4, 4, 8)))


def test_clean_model_is_untouched(tmp_path):
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Add()([keras.layers.Dense(4)(inp), inp]))
    model.save(tmp_path / "m.h5")
    cfg = read_config(tmp_path / "m.h5")
    fixed, fixups = fix_keras3_config(cfg)
    assert fixups == [] and fixed == cfg and fixed is not cfg


def test_module_imports_no_tensorflow():
    code = (
        "import sys, surgeon.io.keras3_fixups; "
        "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]; "
        "assert not bad, bad"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
