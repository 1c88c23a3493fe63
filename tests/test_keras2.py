"""Keras 2 -> Keras 3 translation: one unit test per rule, then every fixture in fixtures/keras2
translated, built with Keras 3, given its weights and compared with the outputs tf.keras 2 itself
computed (``NAME.expected.npz``). Runs without tf_keras."""

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from surgeon.errors import SurgeonError
from surgeon.io.keras_model import check_code_layers
from surgeon.spec import MODEL_CLASSES, ModelSpec
from surgeon.io import keras2 as k2
from surgeon.io.compile_config import translate_training_config

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "keras2")
FIXTURE_NAMES = [
    "k2_nested", "k2_depthwise", "k2_slash_names", "k2_tfop", "k2_sequential",
    "k2_standalone21", "k2_standalone21_functional",
]


# --------------------------------------------------------------------------- small config builders


def inp(name, shape):
    return {"class_name": "InputLayer", "name": name, "inbound_nodes": [],
            "config": {"batch_input_shape": [None] + list(shape), "dtype": "float32",
                       "sparse": False, "ragged": False, "name": name}}


def layer(cls, name, inbound, **cfg):
    return {"class_name": cls, "name": name, "inbound_nodes": inbound,
            "config": {"name": name, "trainable": True, "dtype": "float32", **cfg}}


def model(layers, inputs, outputs, cls="Functional", **extra):
    return {"class_name": cls, "config": {"name": "m", "layers": layers, "input_layers": inputs,
                                          "output_layers": outputs, **extra}}


def tfop(name, fn, node, cls="TFOpLambda"):
    return {"class_name": cls, "name": name, "inbound_nodes": [node],
            "config": {"name": name, "trainable": True, "dtype": "float32", "function": fn}}


def by_name(translation):
    return {lay["name"]: lay for lay in translation.config["config"]["layers"]}


def history(lay, node=0):
    """keras_history of every tensor in a translated layer's call args."""
    out = []

    def walk(x):
        if isinstance(x, dict) and x.get("class_name") == "__keras_tensor__":
            out.append(x["config"]["keras_history"])
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(lay["inbound_nodes"][node]["args"])
    return out


def conv_model(**conv_extra):
    return model(
        [inp("x", (8, 8, 3)),
         layer("Conv2D", "c", [[["x", 0, 0, {}]]], filters=4, kernel_size=[3, 3], **conv_extra)],
        [["x", 0, 0]], [["c", 0, 0]])


# --------------------------------------------------------------------------- versions and weights


@pytest.mark.parametrize("version,expected", [
    ("2.1.6", True), ("2.15.0", True), ("2.21.0", True), (b"2.4.0", True), ("3.15.1", False),
    ("1.2.2", False), (None, False), ("", False),
])
def test_is_keras2(version, expected):
    assert k2.is_keras2(version) is expected


def test_looks_like_keras2():
    assert k2.looks_like_keras2({"class_name": "Sequential", "config": []})
    assert k2.looks_like_keras2(conv_model())
    assert not k2.looks_like_keras2(k2.translate_model_config(conv_model()).config)


def test_module_imports_no_tensorflow():
    code = ("import sys; import surgeon.io.keras2; "
            "bad = [m for m in ('tensorflow', 'keras', 'tf_keras') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    root = os.path.join(os.path.dirname(__file__), "..")
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


# --------------------------------------------------------------------------- config-key rules


def test_input_layer_batch_input_shape_and_new_inbound_format():
    t = k2.translate_model_config(conv_model())
    lays = by_name(t)
    assert lays["x"]["config"]["batch_shape"] == [None, 8, 8, 3]
    assert "batch_input_shape" not in lays["x"]["config"]
    node = lays["c"]["inbound_nodes"][0]
    assert node["kwargs"] == {}
    tensor = node["args"][0]
    assert tensor["class_name"] == "__keras_tensor__"
    assert tensor["config"] == {"shape": [None, 8, 8, 3], "dtype": "float32",
                                "keras_history": ["x", 0, 0]}
    assert lays["c"]["config"]["dtype"]["class_name"] == "DTypePolicy"
    assert t.config["class_name"] == "Functional"


def test_depthwise_groups_dropped():
    cfg = model([inp("x", (8, 8, 3)),
                 layer("DepthwiseConv2D", "dw", [[["x", 0, 0, {}]]], kernel_size=[3, 3],
                       groups=1, depth_multiplier=1),
                 layer("SeparableConv2D", "sep", [[["dw", 0, 0, {}]]], filters=2,
                       kernel_size=[3, 3], groups=1, kernel_initializer={"class_name": "Zeros",
                                                                        "config": {}})],
                [["x", 0, 0]], [["sep", 0, 0]])
    t = k2.translate_model_config(cfg)
    lays = by_name(t)
    assert "groups" not in lays["dw"]["config"]
    assert "groups" not in lays["sep"]["config"]
    assert "kernel_initializer" not in lays["sep"]["config"]
    assert any("groups" in n for n in t.notes)
    cfg["config"]["layers"][1]["config"]["groups"] = 3
    with pytest.raises(SurgeonError, match="dw"):
        k2.translate_model_config(cfg)


def test_batchnorm_axis_and_legacy_keys():
    cfg = model([inp("x", (4, 4, 3)),
                 layer("BatchNormalization", "bn", [[["x", 0, 0, {}]]], axis=[3], fused=None,
                       renorm=False, renorm_clipping=None, renorm_momentum=0.99,
                       virtual_batch_size=None, adjustment=None)],
                [["x", 0, 0]], [["bn", 0, 0]])
    c = by_name(k2.translate_model_config(cfg))["bn"]["config"]
    assert c["axis"] == 3
    assert not {"fused", "renorm", "renorm_clipping", "virtual_batch_size"} & set(c)
    cfg["config"]["layers"][1]["config"]["renorm"] = True
    with pytest.raises(SurgeonError, match="renorm"):
        k2.translate_model_config(cfg)


def test_variance_scaling_normal_becomes_truncated_normal():
    init = {"class_name": "VarianceScaling",
            "config": {"scale": 2.0, "mode": "fan_in", "distribution": "normal", "seed": None}}
    t = k2.translate_model_config(conv_model(kernel_initializer=init))
    assert by_name(t)["c"]["config"]["kernel_initializer"]["config"]["distribution"] == \
        "truncated_normal"


def test_slash_names_renamed_everywhere():
    cfg = model([inp("in/x", (4,)),
                 layer("Dense", "b1/dense", [[["in/x", 0, 0, {}]]], units=2),
                 layer("Dense", "b1_dense", [[["b1/dense", 0, 0, {}]]], units=2)],
                [["in/x", 0, 0]], [["b1_dense", 0, 0], ["b1/dense", 0, 0]])
    t = k2.translate_model_config(cfg)
    assert t.renamed == {"in/x": "in_x", "b1/dense": "b1_dense_1"}  # b1_dense already taken
    lays = by_name(t)
    assert set(lays) == {"in_x", "b1_dense_1", "b1_dense"}
    assert lays["b1_dense_1"]["config"]["name"] == "b1_dense_1"
    assert history(lays["b1_dense"]) == [["b1_dense_1", 0, 0]]
    assert t.config["config"]["input_layers"] == ["in_x", 0, 0]  # one input: no list
    assert t.config["config"]["output_layers"] == [["b1_dense", 0, 0], ["b1_dense_1", 0, 0]]


def test_convnext_layer_scale_passes_translation_and_the_door_makes_it_an_exact_einsum_dense():
    keras = pytest.importorskip("keras")
    from surgeon.io import dialects
    cfg = model([inp("x", (2, 2, 3)), layer("Dense", "d", [[["x", 0, 0, {}]]], units=3),
                 layer("LayerScale", "ls", [[["d", 0, 0, {}]]], init_values=1e-6, projection_dim=3)],
                [["x", 0, 0]], [["ls", 0, 0]])
    kept = by_name(k2.translate_model_config(cfg))["ls"]
    assert (kept["class_name"], kept["config"]["projection_dim"]) == ("LayerScale", 3)
    door = dialects.translate(cfg, None, "2.15.0")
    assert {lay["name"]: lay["class_name"] for lay in door.config["config"]["layers"]}["ls"] == "EinsumDense"
    rng = np.random.default_rng(0)
    kernel, bias, gamma = rng.normal(size=(3, 3)), rng.normal(size=3), rng.uniform(0.5, 1.5, 3)
    weights = door.map_weights({"d": {"kernel": kernel, "bias": bias}, "ls": {"gamma": gamma}})
    m = keras.Model.from_config(door.config["config"])
    for name, named in weights.items():
        m.get_layer(name).set_weights(list(named.values()))
    x = rng.normal(size=(2, 2, 2, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(m(x)), (x @ kernel + bias) * gamma, rtol=1e-5, atol=1e-6)


def test_inception_resnet_custom_scale_layer_loses_its_custom_package_and_becomes_rescaling_and_add():
    keras = pytest.importorskip("keras")
    from surgeon.io import dialects
    cfg = model([inp("a", (2, 3)), inp("b", (2, 3)),
                 layer("Custom>CustomScaleLayer", "cs", [[["a", 0, 0, {}], ["b", 0, 0, {}]]], scale=0.17)],
                [["a", 0, 0], ["b", 0, 0]], [["cs", 0, 0]])
    assert by_name(k2.translate_model_config(cfg))["cs"]["class_name"] == "CustomScaleLayer"
    door = dialects.translate(cfg, None, "2.15.0")
    assert {lay["class_name"] for lay in door.config["config"]["layers"]} == {"InputLayer", "Rescaling", "Add"}
    m = keras.Model.from_config(door.config["config"])
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 2, 3)).astype("float32"), rng.normal(size=(2, 2, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(m([a, b])), a + b * np.float32(0.17), rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- nested models


def nested_cfg(inner_cls="Functional", frozen=True):
    if inner_cls == "Sequential":
        inner_config = {"name": "base", "layers": [
            {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4],
                                                    "dtype": "float32", "name": "i"}},
            {"class_name": "Dense", "config": {"name": "d", "trainable": True, "units": 3}}]}
    else:
        inner_config = {"name": "base", "layers": [
            inp("i", (4,)), layer("Dense", "d", [[["i", 0, 0, {}]]], units=3)],
            "input_layers": [["i", 0, 0]], "output_layers": [["d", 0, 0]]}
    if frozen:
        inner_config["trainable"] = False
    base = {"class_name": inner_cls, "name": "base", "config": inner_config,
            "inbound_nodes": [[["x", 0, 0, {}]]]}
    return model([inp("x", (4,)), base, layer("Dense", "head", [[["base", 1, 0, {}]]], units=2)],
                 [["x", 0, 0]], [["head", 0, 0], ["base", 1, 0]])


@pytest.mark.parametrize("inner_cls", ["Functional", "Model", "Sequential"])
def test_nested_model_node_indices(inner_cls):
    t = k2.translate_model_config(nested_cfg(inner_cls))
    lays = by_name(t)
    assert history(lays["head"]) == [["base", 0, 0]]  # Keras 3 counts calls from 0
    # output_layers: Keras 3 subtracts 1 itself for a Functional, not for a Sequential
    expected = 1 if inner_cls != "Sequential" else 0
    assert t.config["config"]["output_layers"][1] == ["base", expected, 0]
    assert lays["base"]["class_name"] == ("Sequential" if inner_cls == "Sequential"
                                          else "Functional")


def test_frozen_nested_model_freezes_inner_layers():
    t = k2.translate_model_config(nested_cfg())
    base = by_name(t)["base"]["config"]
    assert base["trainable"] is False
    inner = {lay["name"]: lay["config"] for lay in base["layers"]}
    assert inner["d"]["trainable"] is False
    assert any("propagated" in n for n in t.notes)
    t = k2.translate_model_config(nested_cfg(frozen=False))
    assert by_name(t)["base"]["config"]["layers"][1]["config"]["trainable"] is True


def test_nested_models_build_in_keras3():
    keras = pytest.importorskip("keras")
    from keras.src.legacy.saving import saving_utils
    for inner_cls in ("Functional", "Sequential"):
        m = saving_utils.model_from_config(k2.translate_model_config(nested_cfg(inner_cls)).config)
        assert [tuple(o.shape) for o in m.outputs] == [(None, 2), (None, 3)]
        assert isinstance(m, keras.Model)


# --------------------------------------------------------------------------- Sequential


def test_list_sequential_gets_input_layer():
    cfg = {"class_name": "Sequential", "config": [
        {"class_name": "Dense", "config": {"name": "dense_1", "units": 3, "trainable": True,
                                           "batch_input_shape": [None, 5], "dtype": "float32"}},
        {"class_name": "Dense", "config": {"name": "dense_2", "units": 1, "trainable": True}},
    ]}
    t = k2.translate_model_config(cfg)
    c = t.config["config"]
    assert t.config["class_name"] == "Sequential"
    assert c["layers"][0]["class_name"] == "InputLayer"
    assert c["layers"][0]["config"]["batch_shape"] == [None, 5]
    assert "batch_input_shape" not in c["layers"][1]["config"]
    assert c["build_input_shape"] == [None, 5]
    assert any("list-shaped" in n for n in t.notes)


# --------------------------------------------------------------------------- TF op layers


def tf_model(op_layers, out, shape=(6, 5, 4)):
    return model([inp("x", shape)] + op_layers, [["x", 0, 0]], [[out, 0, 0]])


@pytest.mark.parametrize("fn,y,scale,offset", [
    ("__operators__.add", 1.5, 1.0, 1.5),
    ("math.add", [1.0, 2.0, 3.0, 4.0], [1.0] * 4, [1.0, 2.0, 3.0, 4.0]),
    ("math.multiply", 2.0, 2.0, 0.0),
    ("math.subtract", 1.0, 1.0, -1.0),
    ("math.truediv", 4.0, 0.25, 0.0),
])
def test_tfop_constant_to_rescaling(fn, y, scale, offset):
    t = k2.translate_model_config(tf_model([tfop("op", fn, ["x", 0, 0, {"y": y, "name": None}])],
                                           "op"))
    lay = by_name(t)["op"]
    assert lay["class_name"] == "Rescaling"
    assert lay["config"]["scale"] == scale and lay["config"]["offset"] == offset
    assert history(lay) == [["x", 0, 0]]


def test_tfop_constant_minus_tensor():
    node = ["_CONSTANT_VALUE", -1, 3.0, {"y": ["x", 0, 0], "name": None}]
    t = k2.translate_model_config(tf_model([tfop("op", "math.subtract", node)], "op"))
    c = by_name(t)["op"]["config"]
    assert (c["scale"], c["offset"]) == (-1.0, 3.0)


@pytest.mark.parametrize("fn", ["math.truediv", "__operators__.truediv"])
def test_tfop_constant_divided_by_tensor_is_refused_not_turned_into_a_scale(fn):
    """2 / x is no Rescaling; translating it as x / 2 would be silently wrong everywhere after."""
    node = ["_CONSTANT_VALUE", -1, 2.0, {"y": ["x", 0, 0], "name": None}]
    with pytest.raises(SurgeonError, match="constant first"):
        k2.translate_model_config(tf_model([tfop("op", fn, node)], "op"))


@pytest.mark.parametrize("fn,cls", [("__operators__.add", "Add"),
                                    ("math.subtract", "Subtract"),
                                    ("math.multiply", "Multiply")])
def test_tfop_two_tensors_to_merge(fn, cls):
    ops = [tfop("r", "nn.relu", ["x", 0, 0, {"name": None}]),
           tfop("op", fn, ["x", 0, 0, {"y": ["r", 0, 0], "name": None}])]
    lay = by_name(k2.translate_model_config(tf_model(ops, "op")))["op"]
    assert lay["class_name"] == cls
    assert history(lay) == [["x", 0, 0], ["r", 0, 0]]


def test_tfop_unary_concat_reduce():
    ops = [tfop("r", "nn.relu", ["x", 0, 0, {"name": None}]),
           tfop("s", "math.sigmoid", ["x", 0, 0, {}]),
           tfop("cat", "concat", [["r", 0, 0, {"axis": -1}], ["s", 0, 0, {"axis": -1}]]),
           tfop("mean", "math.reduce_mean", ["cat", 0, 0, {"axis": [1, 2]}]),
           tfop("mx", "math.reduce_max", ["cat", 0, 0, {"axis": [-3, -2], "keepdims": True}])]
    lays = by_name(k2.translate_model_config(tf_model(ops, "mean")))
    assert lays["r"]["class_name"] == "ReLU"
    assert lays["s"]["class_name"] == "Activation"
    assert lays["s"]["config"]["activation"] == "sigmoid"
    assert lays["cat"]["class_name"] == "Concatenate" and lays["cat"]["config"]["axis"] == -1
    assert history(lays["cat"]) == [["r", 0, 0], ["s", 0, 0]]
    assert lays["mean"]["class_name"] == "GlobalAveragePooling2D"
    assert lays["mean"]["config"]["keepdims"] is False
    assert lays["mx"]["class_name"] == "GlobalMaxPooling2D"
    assert lays["mx"]["config"]["keepdims"] is True


def test_tfop_untranslatable_names_layer_and_op():
    cfg = tf_model([tfop("tf.math.exp", "math.exp", ["x", 0, 0, {"name": None}])], "tf.math.exp")
    with pytest.raises(SurgeonError) as e:
        k2.translate_model_config(cfg)
    msg = str(e.value)
    assert "'tf.math.exp'" in msg and "'math.exp'" in msg and "\n" not in msg
    cfg = tf_model([tfop("m", "math.reduce_mean", ["x", 0, 0, {"axis": -1}])], "m")
    with pytest.raises(SurgeonError, match="math.reduce_mean"):
        k2.translate_model_config(cfg)


def full(n):
    return [{"start": None, "stop": None, "step": None}] * n


def sl(start, stop, step=None):
    return {"start": start, "stop": stop, "step": step}


SLICES = [
    # (input shape without batch, spec, numpy index)
    ((6, 5, 4), full(1) + [sl(1, 4), sl(None, -1)], np.s_[:, 1:4, :-1]),
    ((6, 5, 4), full(3) + [sl(1, 3)], np.s_[:, :, :, 1:3]),
    ((6, 5, 4), full(1) + [sl(2, None), sl(None, None), sl(None, -2)], np.s_[:, 2:, :, :-2]),
    ((7,), full(1) + [sl(2, 6)], np.s_[:, 2:6]),
    ((6, 5), full(1) + [sl(1, -1), sl(-3, None)], np.s_[:, 1:-1, -3:]),
    ((6, 4), full(1) + [sl(1, None)], np.s_[:, 1:]),
    ((3, 4, 5, 2), full(2) + [sl(1, 3)], np.s_[:, :, 1:3]),
]


@pytest.mark.parametrize("shape,spec,index", SLICES)
def test_slicing_becomes_cropping_and_matches_numpy(shape, spec, index):
    pytest.importorskip("keras")
    from keras.src.legacy.saving import saving_utils
    op = tfop("cut", "__operators__.getitem", ["x", 0, 0, {"slice_spec": spec}],
              cls="SlicingOpLambda")
    t = k2.translate_model_config(tf_model([op], "cut", shape))
    assert all(lay["class_name"] in ("InputLayer", "Reshape") or
               lay["class_name"].startswith("Cropping")
               for lay in t.config["config"]["layers"])
    m = saving_utils.model_from_config(t.config)
    x = np.random.default_rng(0).normal(size=(2,) + shape).astype("float32")
    np.testing.assert_array_equal(np.asarray(m(x)), x[index])


@pytest.mark.parametrize("spec", [full(1) + [sl(None, None, 2)], [sl(1, None)], [0]])
def test_unsupported_slicing_refused(spec):
    op = tfop("cut", "__operators__.getitem", ["x", 0, 0, {"slice_spec": spec}],
              cls="SlicingOpLambda")
    with pytest.raises(SurgeonError, match="'cut'"):
        k2.translate_model_config(tf_model([op], "cut"))


def test_lambda_passes_the_translation_untouched_and_the_code_gate_refuses_it():
    lam = layer("Lambda", "lam", [[["x", 0, 0, {}]]],
                function=["4wEAAAAAAAAA", None, None], function_type="lambda",
                module="__main__", output_shape=None, arguments={})
    cfg = model([inp("x", (4,)), lam], [["x", 0, 0]], [["lam", 0, 0]])
    t = k2.translate_model_config(cfg)
    assert by_name(t)["lam"]["config"]["function"] == ["4wEAAAAAAAAA", None, None]
    spec = ModelSpec(config=t.config, weights={})
    with pytest.raises(SurgeonError, match="'lam'.*--allow-code"):
        check_code_layers(spec, allow_code=False)
    check_code_layers(spec, allow_code=True)


# --------------------------------------------------------------------------- training config


def test_training_config():
    notes = []
    tc = translate_training_config({
        "optimizer_config": {"class_name": "Custom>Adam", "config": {
            "name": "Adam", "lr": 0.01, "decay": 1e-4, "beta_1": 0.9, "jit_compile": True,
            "is_legacy_optimizer": False}},
        "loss": {"class_name": "MeanSquaredError",
                 "config": {"reduction": "auto", "name": "mean_squared_error"}},
        "metrics": [[{"class_name": "MeanMetricWrapper",
                      "config": {"name": "accuracy", "dtype": "float32",
                                 "fn": "categorical_accuracy"}}]],
        "sample_weight_mode": None, "loss_weights": None,
    }, notes)
    opt = tc["optimizer_config"]
    assert opt["class_name"] == "Adam"
    assert opt["config"]["learning_rate"] == 0.01
    assert not {"lr", "decay", "jit_compile", "is_legacy_optimizer"} & set(opt["config"])
    assert tc["loss"]["config"]["reduction"] == "sum_over_batch_size"
    assert tc["metrics"] == ["accuracy"]
    assert "sample_weight_mode" not in tc
    assert any("decay 0.0001" in n for n in notes)
    assert translate_training_config({"loss": "logcosh"})["loss"] == "log_cosh"
    assert translate_training_config(
        {"optimizer_config": {"class_name": "sgd", "config": {"lr": 0.1}}}
    )["optimizer_config"] == {"class_name": "SGD", "config": {"learning_rate": 0.1}}


# --------------------------------------------------------------------------- fixtures end to end


def _s(v):
    return v.decode() if isinstance(v, bytes) else v


def group_layer_weights(weight_names, arrays, inner_layer_names, renamed):
    """This test's own attribution of a nested model's Keras 2 weights, independent of surgeon's
    reader: each weight goes to the inner layer named by the longest suffix of its layer path
    (``blk/bn/gamma:0`` -> ``blk/bn``), stored order kept; keyed by the Keras 3 (renamed) name."""
    known = set(inner_layer_names)
    out = {}
    for weight_name, array in zip(weight_names, arrays):
        parts = weight_name.split(":")[0].split("/")[:-1]
        owner = next("/".join(parts[i:]) for i in range(len(parts)) if "/".join(parts[i:]) in known)
        out.setdefault(renamed.get(owner, owner), []).append(array)
    return out


def load_translated(name):
    """Translate a fixture, build it with Keras 3 the way an .h5 load does, set its weights
    through the documented mapping (surgeon.io.keras2 docstring) with this test's own code."""
    from keras.src.legacy.saving import saving_utils

    with h5py.File(os.path.join(FIXTURES, name + ".h5"), "r") as f:
        assert k2.is_keras2(_s(f.attrs["keras_version"]))
        mc = json.loads(_s(f.attrs["model_config"]))
        tc = json.loads(_s(f.attrs["training_config"])) if "training_config" in f.attrs else None
        t = k2.translate_model_config(mc)
        m = saving_utils.model_from_config(json.loads(json.dumps(t.config)))
        old_layers = mc["config"] if isinstance(mc["config"], list) else mc["config"]["layers"]
        old = {(lay.get("name") or lay["config"]["name"]): lay for lay in old_layers}
        mw = f["model_weights"]
        for lname in mw.attrs["layer_names"]:
            lname = _s(lname)
            g = mw[lname]  # '/' in a name is a path of nested groups: h5py follows it
            wnames = [_s(w) for w in g.attrs["weight_names"]]
            if not wnames:
                continue
            arrays = [g[w][()] for w in wnames]
            target = m.get_layer(t.renamed.get(lname, lname))
            if old[lname]["class_name"] in MODEL_CLASSES:
                inner_cfg = old[lname]["config"]
                inner = inner_cfg if isinstance(inner_cfg, list) else inner_cfg["layers"]
                inner_names = [(lay.get("name") or lay["config"]["name"]) for lay in inner]
                for inner_name, arrs in group_layer_weights(
                        wnames, arrays, inner_names, t.renamed).items():
                    target.get_layer(inner_name).set_weights(arrs)
            else:
                target.set_weights(arrays)
    return t, m, tc


def expected(name):
    e = np.load(os.path.join(FIXTURES, name + ".expected.npz"))
    xs = [e["x"]] if "x" in e else [e[f"x{i}"] for i in range(len(e.files)) if f"x{i}" in e]
    ys = [e["y"]] if "y" in e else [e[f"y{i}"] for i in range(len(e.files)) if f"y{i}" in e]
    return xs, ys


def run(m, xs):
    out = m(xs if len(xs) > 1 else xs[0], training=False)
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_matches_keras2_outputs(name, tmp_path):
    keras = pytest.importorskip("keras")
    t, m, tc = load_translated(name)
    xs, ys = expected(name)
    got = run(m, xs)
    assert len(got) == len(ys)
    for a, b in zip(got, ys):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # the translated model saves and reloads with plain Keras 3, with its training config
    if tc is not None:
        from keras.src.legacy.saving import saving_utils
        args = saving_utils.compile_args_from_training_config(translate_training_config(tc))
        m.compile(**{k: v for k, v in args.items() if v is not None})
    path = str(tmp_path / (name + "_k3.h5"))
    m.save(path)
    again = keras.models.load_model(path)
    for a, b in zip(run(again, xs), ys):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fixture_frozen_nested_layers():
    _, m, _ = load_translated("k2_nested")
    base = m.get_layer("base")
    assert base.trainable is False
    assert all(not lay.trainable for lay in base.layers if lay.weights)
    assert m.get_layer("head").trainable
    assert len(m.trainable_weights) == 2  # head kernel and bias only
    _, m, _ = load_translated("k2_standalone21_functional")
    assert not m.get_layer("encoder").get_layer("enc_dense").trainable


def test_fixture_slash_names_renamed():
    t, m, _ = load_translated("k2_slash_names")
    assert t.renamed["block1/conv"] == "block1_conv"
    assert "head_dense" in [lay.name for lay in m.layers]


def test_fixture_tfop_has_no_op_layers():
    t, _, _ = load_translated("k2_tfop")
    classes = {lay["class_name"] for lay in t.config["config"]["layers"]}
    assert not classes & {"TFOpLambda", "SlicingOpLambda", "Lambda"}
    assert {"Rescaling", "Add", "Subtract", "Concatenate", "Cropping2D",
            "GlobalAveragePooling2D", "ReLU"} <= classes


def test_fixtures_small():
    for name in FIXTURE_NAMES:
        assert os.path.getsize(os.path.join(FIXTURES, name + ".h5")) < 300_000
