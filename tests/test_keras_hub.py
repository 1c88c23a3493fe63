"""keras-hub models in, plain functional Keras out.

A small ResNet v1 backbone (random weights, random BN statistics; fixtures/keras_hub_models.py)
in the three forms users hold it in: their own model nesting the frozen backbone, the
ImageClassifier task, and the task's preset directory; plus the backbone alone. Every output is
compared with the model as keras-hub itself runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
from typer.testing import CliRunner

from surgeon.cli import app

keras_hub = pytest.importorskip("keras_hub")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures"))
from keras_hub_models import IMAGE, build_backbone, write_cases  # noqa: E402

runner = CliRunner()
NAME = "resnet_v1"
BLOCKER = '''
import sys
class _NoKerasHub:
    def find_spec(self, name, path=None, target=None):
        if name == "keras_hub" or name.startswith("keras_hub."):
            raise ImportError("No module named 'keras_hub' (blocked)")
sys.meta_path.insert(0, _NoKerasHub())
'''


@pytest.fixture(scope="session")
def hub_cases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keras_hub")
    paths = write_cases(NAME, str(folder))
    backbone = build_backbone(NAME, seed=1)
    paths["backbone"] = str(folder / "backbone.keras")
    backbone.save(paths["backbone"])
    return paths


@pytest.fixture(scope="session")
def no_keras_hub_path(tmp_path_factory):
    """A PYTHONPATH entry whose sitecustomize makes ``import keras_hub`` fail."""
    folder = tmp_path_factory.mktemp("no_keras_hub")
    (folder / "sitecustomize.py").write_text(BLOCKER)
    return str(folder)


def images(count=4):
    return np.random.default_rng(0).uniform(-1, 1, (count, IMAGE, IMAGE, 3)).astype("float32")


def as_keras_hub_runs_it(path: str):
    import keras

    if os.path.isdir(path):
        return keras_hub.models.ImageClassifier.from_preset(path)
    return keras.saving.load_model(path)


def relative_error(expected, got) -> float:
    expected, got = np.asarray(expected, np.float64), np.asarray(got, np.float64)
    return float(np.abs(expected - got).max() / np.abs(expected).max())


def plain(path):
    import keras

    return keras.models.load_model(path)


def test_user_model_nesting_a_frozen_backbone_folds_every_bn_and_matches_keras_hub(hub_cases, tmp_path):
    output = str(tmp_path / "folded.keras")
    result = runner.invoke(app, ["fold-bn", hub_cases["user"], "-o", output, "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    actions = {row["action"] for row in report["passes"][0]["changes"]}
    assert actions == {"folded-after"}
    assert any("plain functional model" in note for note in report["notes"])
    with zipfile.ZipFile(output) as archive:
        assert b"keras_hub" not in archive.read("config.json")
    folded = plain(output)
    assert not [l for l in folded._flatten_layers() if type(l).__name__ == "BatchNormalization"]
    x = images()
    assert relative_error(as_keras_hub_runs_it(hub_cases["user"])(x), folded(x)) <= 1e-5


def test_backbones_with_keras_ops_in_their_graph_fold_and_match_keras_hub(tmp_path):
    """ResNetV2 pads with ``ops.pad``: an op, not a layer, among the graph's layers."""
    from keras_hub_models import build_user_model

    path = str(tmp_path / "resnet_v2_user.keras")
    build_user_model("resnet_v2", build_backbone("resnet_v2")).save(path)
    output = str(tmp_path / "folded.keras")
    result = runner.invoke(app, ["fold-bn", path, "-o", output])

    assert result.exit_code == 0, result.output
    x = images()
    assert relative_error(as_keras_hub_runs_it(path)(x), plain(output)(x)) <= 1e-5


def test_frozen_keras_hub_blocks_that_own_their_layers_come_out_really_frozen(tmp_path):
    """EfficientNetV2's FusedMBConvBlock and MBConvBlock create their Conv2D and BatchNormalization
    layers without passing their own flag on: loaded from a file, a frozen block trains every
    layer inside it. Written as the graphs of those layers, each carries its own flag."""
    from keras_hub_models import build_user_model

    path = str(tmp_path / "efficientnet_v2_user.keras")
    build_user_model("efficientnet_v2", build_backbone("efficientnet_v2")).save(path)
    output = str(tmp_path / "prepared.keras")
    result = runner.invoke(app, ["prepare", path, "-o", output, "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["checked"]["passed"]  # frozen weights bit-for-bit unchanged after fitting the reloaded file
    assert any("FusedMBConvBlock" in note and "own flag" in note for note in report["notes"])
    with zipfile.ZipFile(output) as archive:
        assert b"keras_hub" not in archive.read("config.json")
    prepared = plain(output)
    assert not [l for l in prepared._flatten_layers() if type(l).__name__ == "BatchNormalization"]
    x = images()
    assert relative_error(as_keras_hub_runs_it(path)(x), prepared(x)) <= 1e-5


def test_a_backbone_saved_without_its_trainable_flag_is_said_so(tmp_path):
    """keras-hub 0.32's VGGBackbone.get_config leaves out ``trainable``: frozen when saved, trainable when loaded."""
    from keras_hub_models import build_user_model

    path = str(tmp_path / "vgg_user.keras")
    build_user_model("vgg", build_backbone("vgg")).save(path)
    result = runner.invoke(app, ["inspect", path, "--json"])

    assert result.exit_code == 0, result.output
    notes = [note for note in json.loads(result.output)["notes"] if "saved without its trainable flag" in note]
    assert len(notes) == 1 and "--freeze vgg_backbone" in notes[0]


def test_the_backbone_alone_is_inspected_as_its_graph(hub_cases):
    result = runner.invoke(app, ["inspect", hub_cases["backbone"], "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    classes = {row["class_name"] for row in report["layers"]}
    assert {"Conv2D", "BatchNormalization", "Add"} <= classes and "ResNetBackbone" not in classes
    assert report["special_layers"] == [] and report["format"] == "keras-hub .keras"


def test_classifier_task_prepare_reproduces_task_call_and_reports_the_preprocessing(hub_cases, tmp_path):
    output = str(tmp_path / "prepared.keras")
    result = runner.invoke(app, ["prepare", hub_cases["classifier"], "-o", output, "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["checked"]["passed"]
    preprocessing = [note for note in report["notes"] if "preprocessor" in note]
    assert preprocessing and "resize to 32x32" in preprocessing[0] and "scale=" in preprocessing[0] and "--bake-preprocessing" in preprocessing[0]
    x = images()
    assert relative_error(as_keras_hub_runs_it(hub_cases["classifier"])(x), plain(output)(x)) <= 1e-5


def test_bake_preprocessing_puts_resizing_and_rescaling_in_front(hub_cases, tmp_path):
    output = str(tmp_path / "baked.keras")
    result = runner.invoke(app, ["fold-bn", hub_cases["classifier"], "-o", output, "--bake-preprocessing"])

    assert result.exit_code == 0, result.output
    baked = plain(output)
    assert [type(layer).__name__ for layer in baked.layers[1:3]] == ["Resizing", "Rescaling"]
    task = as_keras_hub_runs_it(hub_cases["classifier"])
    pixels = np.random.default_rng(1).uniform(0, 255, (3, 48, 40, 3)).astype("float32")  # another size: resized
    expected = task(np.asarray(task.preprocessor.image_converter(pixels)))
    assert relative_error(expected, baked(pixels)) <= 1e-5


def test_bake_preprocessing_without_a_preprocessor_is_one_line(hub_cases, tmp_path):
    result = runner.invoke(app, ["fold-bn", hub_cases["user"], "-o", str(tmp_path / "x.keras"), "--bake-preprocessing"])

    assert result.exit_code == 2 and "no image preprocessor" in result.output
    assert not (tmp_path / "x.keras").exists()


def test_preset_directory_splits_at_the_backbone(hub_cases, tmp_path):
    base, top = str(tmp_path / "base.keras"), str(tmp_path / "top.keras")
    result = runner.invoke(app, ["split", hub_cases["preset"], "--at", f"{NAME}_backbone", "--base-out", base, "--top-out", top])

    assert result.exit_code == 0, result.output
    x = images()
    assert relative_error(as_keras_hub_runs_it(hub_cases["preset"])(x), plain(top)(plain(base)(x))) <= 1e-5


def test_prepared_output_loads_fits_and_keeps_frozen_weights_without_keras_hub(hub_cases, no_keras_hub_path, tmp_path):
    from surgeon import prepare_file

    output = str(tmp_path / "prepared.keras")
    assert prepare_file(hub_cases["preset"], output).passed
    job = textwrap.dedent('''
        import sys
        import numpy as np
        try:
            import keras_hub
            sys.exit("keras_hub importable")
        except ImportError:
            pass
        import keras
        model = keras.models.load_model(sys.argv[1])
        frozen = {w.path: np.array(w) for w in model.non_trainable_weights}
        x = np.random.default_rng(0).uniform(-1, 1, (8, 32, 32, 3)).astype("float32")
        assert model.compiled  # the task's own compile config (sparse categorical crossentropy) came along
        model.fit(x, np.arange(8) % 3, batch_size=4, verbose=0)
        moved = [w.path for w in model.non_trainable_weights if not np.array_equal(np.array(w), frozen[w.path])]
        print("FROZEN", len(frozen), "MOVED", len(moved))
    ''')
    done = subprocess.run([sys.executable, "-c", job, output], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": no_keras_hub_path, "TF_CPP_MIN_LOG_LEVEL": "3"})

    assert done.returncode == 0, done.stderr[-500:]
    counts = done.stdout.split()
    assert counts[0] == "FROZEN" and int(counts[1]) > 0 and counts[2:] == ["MOVED", "0"]


def test_without_keras_hub_installed_the_error_names_the_extra(hub_cases, no_keras_hub_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", "from surgeon.cli import main; main()", "inspect", hub_cases["user"]],
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([no_keras_hub_path, root]), "TF_CPP_MIN_LOG_LEVEL": "3"})

    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["surgeon: error: the model uses keras-hub classes, and keras-hub is not installed; "
                                                "pip install 'surgeon[hub]'"]


def test_a_keras_hub_class_the_installed_version_lacks_is_one_line(hub_cases, tmp_path):
    broken = tmp_path / "future.keras"
    with zipfile.ZipFile(hub_cases["user"]) as source, zipfile.ZipFile(broken, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                data = data.replace(b"ResNetBackbone", b"ResNetV9Backbone")
            target.writestr(item, data)
    result = runner.invoke(app, ["fold-bn", str(broken), "-o", str(tmp_path / "out.keras")])

    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert "'ResNetV9Backbone'" in result.output and f"keras-hub {keras_hub.__version__} does not have" in result.output
    assert not (tmp_path / "out.keras").exists()


def test_a_preset_directory_without_its_weights_is_one_line(hub_cases, tmp_path):
    import shutil

    preset = tmp_path / "preset"
    shutil.copytree(hub_cases["preset"], preset)
    (preset / "model.weights.h5").unlink()
    result = runner.invoke(app, ["prepare", str(preset), "-o", str(tmp_path / "out.keras")])

    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "has no model.weights.h5" in result.output
    assert not (tmp_path / "out.keras").exists()


def test_library_reads_an_in_memory_keras_hub_model(hub_cases):
    from surgeon import spec_from_keras_model

    spec = spec_from_keras_model(as_keras_hub_runs_it(hub_cases["classifier"]))

    assert spec.config["class_name"] == "Functional"
    backbone = next(layer for layer in spec.config["config"]["layers"] if layer["name"] == f"{NAME}_backbone")
    assert backbone["class_name"] == "Functional" and backbone["config"]["trainable"] is False
