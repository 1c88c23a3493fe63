"""surgeon features: the base's inference outputs, in input order, are exactly what the top sees."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")
from typer.testing import CliRunner  # noqa: E402

from surgeon.cli import app  # noqa: E402
from surgeon.errors import SurgeonError  # noqa: E402
from surgeon.features import extract_features  # noqa: E402
from surgeon.split import split_file  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture(scope="module")
def nested_parts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nested_parts")
    result = split_file(str(FIXTURES / "nested.keras"), directory=str(folder))
    assert result.passed
    return result


@pytest.fixture(scope="module")
def resnet_cut(tmp_path_factory):
    """A base with two outputs: convbn cut after conv2 (the skip tensor and the conv output)."""
    folder = tmp_path_factory.mktemp("convbn_parts")
    result = split_file(str(FIXTURES / "convbn.keras"), at="conv2", directory=str(folder))
    assert result.passed
    return result


@pytest.fixture(scope="module")
def resnet_cut_base(resnet_cut):
    return resnet_cut.base


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(3).uniform(0, 255, size=(45, 16, 16, 3)).astype("float32")


def test_npy_features_equal_the_base_run_by_keras_in_input_order(nested_parts, images, tmp_path):
    data, out = tmp_path / "x.npy", tmp_path / "f.npy"
    np.save(data, images)
    result = extract_features(nested_parts.base, str(data), str(out), batch_size=16, progress=False)
    base = keras.models.load_model(nested_parts.base)
    expected = np.asarray(base(images, training=False))
    features = np.load(out)
    assert result.count == 45 and features.shape == expected.shape
    np.testing.assert_allclose(features, expected, rtol=1e-6, atol=1e-6)


def test_several_outputs_go_to_an_npz_keyed_by_output_from_a_memory_mapped_npz(resnet_cut_base, images, tmp_path):
    data, out = tmp_path / "x.npz", tmp_path / "f.npz"
    np.savez(data, input=images)  # uncompressed: read through a memory map
    extract_features(resnet_cut_base, str(data), str(out), batch_size=10, progress=False)
    base = keras.models.load_model(resnet_cut_base)
    expected = [np.asarray(t) for t in base(images)]
    written = np.load(out)
    assert list(written.keys()) == ["relu1", "conv2"]
    for key, want in zip(written.keys(), expected):
        np.testing.assert_allclose(written[key], want, rtol=1e-6, atol=1e-5)


def test_npz_keys_are_the_top_input_names_so_the_top_takes_the_file_as_is(resnet_cut, images, tmp_path):
    np.save(tmp_path / "x.npy", images)
    extract_features(resnet_cut.base, str(tmp_path / "x.npy"), str(tmp_path / "f.npz"), progress=False)
    top = keras.models.load_model(resnet_cut.top)
    features = dict(np.load(tmp_path / "f.npz"))
    assert sorted(features) == sorted(t._keras_history[0].name for t in top.inputs)
    expected = keras.models.load_model(FIXTURES / "convbn.keras")(images)
    np.testing.assert_allclose(np.asarray(top(features)), np.asarray(expected), rtol=1e-5, atol=1e-5)


def test_compressed_npz_gives_the_same_features(resnet_cut_base, images, tmp_path):
    np.savez_compressed(tmp_path / "x.npz", images)  # keyed arr_0: matched by position
    extract_features(resnet_cut_base, str(tmp_path / "x.npz"), str(tmp_path / "f.npz"), progress=False)
    base = keras.models.load_model(resnet_cut_base)
    np.testing.assert_allclose(np.load(tmp_path / "f.npz")["conv2"], np.asarray(base(images)[1]), rtol=1e-6, atol=1e-5)


def test_image_folder_writes_labels_and_states_the_preprocessing(nested_parts, tmp_path):
    import tensorflow as tf

    rng = np.random.default_rng(5)
    pixels = {"cat": rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8), "dog": rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)}
    for label, stack in pixels.items():
        (tmp_path / "images" / label).mkdir(parents=True)
        for index, image in enumerate(stack):
            tf.io.write_file(str(tmp_path / "images" / label / f"{index}.png"), tf.io.encode_png(image))
    result = extract_features(nested_parts.base, str(tmp_path / "images"), str(tmp_path / "f.npy"), batch_size=2, progress=False)
    assert result.class_names == ["cat", "dog"]
    assert "16x16" in result.preprocessing and "[0, 255]" in result.preprocessing
    np.testing.assert_array_equal(np.load(tmp_path / "f_labels.npy"), [0, 0, 0, 1, 1])
    # Images already 16x16: the expected input is the raw pixels as float32 (resize is the identity).
    base = keras.models.load_model(nested_parts.base)
    expected = np.asarray(base(np.concatenate([pixels["cat"], pixels["dog"]]).astype("float32")))
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), expected, rtol=1e-6, atol=1e-5)


def test_seed_scenario_composed_model_in_training_mode_feeds_the_top_the_extracted_features(nested_parts, images, tmp_path):
    """The recipe: split, cache features, train the top on them, compose, fine-tune: the top's inputs match."""
    np.save(tmp_path / "x.npy", images)
    extract_features(nested_parts.base, str(tmp_path / "x.npy"), str(tmp_path / "f.npy"), batch_size=8, progress=False)
    features = np.load(tmp_path / "f.npy")

    base = keras.models.load_model(nested_parts.base)
    top = keras.models.load_model(nested_parts.top)
    labels = np.eye(top.output_shape[-1], dtype="float32")[np.arange(len(images)) % top.output_shape[-1]]
    before = [w.copy() for w in top.get_weights()]
    top.fit(features, labels, batch_size=8, epochs=2, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(before, top.get_weights()))  # the top did train

    inputs = keras.Input(images.shape[1:])
    top_input = base(inputs)
    composed = keras.Model(inputs, top(top_input))
    probe = keras.Model(inputs, top_input)  # the tensor the top receives inside the composed model
    np.testing.assert_allclose(np.asarray(probe(images, training=True)), features, rtol=1e-6, atol=1e-6)

    composed.compile(optimizer="adam", loss="categorical_crossentropy")
    base_weights = [w.copy() for w in base.get_weights()]
    composed.fit(images, labels, batch_size=8, epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(base_weights, base.get_weights()))
    np.testing.assert_allclose(np.asarray(probe(images, training=True)), features, rtol=1e-6, atol=1e-6)

    # The trap the split removes: the original's frozen base still runs Dropout in training mode.
    original_base = keras.models.load_model(FIXTURES / "nested.keras").get_layer("base")
    assert not np.allclose(np.asarray(original_base(images, training=True)), features)


# --- the command line ------------------------------------------------------------------------


def test_cli_json_reports_count_shapes_and_throughput(nested_parts, images, tmp_path):
    np.save(tmp_path / "x.npy", images)
    result = CliRunner().invoke(app, ["features", nested_parts.base, str(tmp_path / "x.npy"), "-o", str(tmp_path / "f.npy"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["count"] == 45 and report["features"] == {"base_pool": [45, 8, 8, 16]}
    assert report["samples_per_second"] > 0


def test_cli_refuses_npy_output_for_a_base_with_two_outputs(resnet_cut_base, images, tmp_path):
    np.save(tmp_path / "x.npy", images)
    result = CliRunner().invoke(app, ["features", resnet_cut_base, str(tmp_path / "x.npy"), "-o", str(tmp_path / "f.npy")])
    assert result.exit_code == 2 and "name the output .npz" in result.output
    assert not (tmp_path / "f.npy").exists()


def test_cli_refuses_data_of_the_wrong_shape_and_an_existing_output(nested_parts, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 8, 8, 3), "float32"))
    result = CliRunner().invoke(app, ["features", nested_parts.base, str(tmp_path / "x.npy"), "-o", str(tmp_path / "f.npy")])
    assert result.exit_code == 2 and "(8, 8, 3)" in result.output and "(16, 16, 3)" in result.output
    (tmp_path / "g.npy").write_text("keep")
    np.save(tmp_path / "y.npy", np.zeros((4, 16, 16, 3), "float32"))
    result = CliRunner().invoke(app, ["features", nested_parts.base, str(tmp_path / "y.npy"), "-o", str(tmp_path / "g.npy")])
    assert result.exit_code == 2 and "--force" in result.output
    assert (tmp_path / "g.npy").read_text() == "keep"


def test_a_multi_input_base_needs_an_npz(tmp_path):
    inputs = [keras.Input((3,), name="a"), keras.Input((2,), name="b")]
    model = keras.Model(inputs, keras.layers.Concatenate()(inputs))
    np.save(tmp_path / "x.npy", np.zeros((2, 3), "float32"))
    with pytest.raises(SurgeonError, match="give an .npz keyed by input name"):
        extract_features(model, str(tmp_path / "x.npy"), str(tmp_path / "f.npy"), progress=False)


def test_features_never_overwrite_the_input_data_even_with_force(tmp_path):
    data = tmp_path / "data.npy"
    np.save(data, np.zeros((2, 16, 16, 3), dtype="float32"))
    before = data.read_bytes()
    result = CliRunner().invoke(app, ["features", str(FIXTURES / "convbn.h5"), str(data), "-o", str(data), "--force"])
    assert result.exit_code == 2 and "is an input file" in result.stderr
    assert data.read_bytes() == before
