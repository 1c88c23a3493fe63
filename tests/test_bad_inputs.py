"""Every command on every broken input: exit 2, one clear line, no traceback, nothing written.

The corpus is built in a temporary directory from the bundled fixtures by the ``make_*`` helpers
below (one per case), so no broken file is checked in. Commands are taken from ``surgeon.cli.app``
when the test runs: a command added later is covered without editing this file (see ``argv_for``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from conftest import fixture_path
from saved_model_edits import copy_saved_model, edit_index, edit_metadata

GOOD_H5 = "convbn.h5"
GOOD_KERAS = "convbn.keras"
SAVED_MODEL = "keras2/tfk_nested_savedmodel"  # a tf.keras 2 SavedModel directory
TF_KERAS = "keras2/tfk_flat.keras"  # a .keras archive written by tf.keras 2
JSON_MODEL = "keras2/tfk_flat"  # .json architecture + .h5 weights (save_weights)


# --- editing helpers: a fixture copied and changed in one place -----------------------------------


def copy_fixture(name: str, target: Path) -> Path:
    shutil.copyfile(fixture_path(name), target)
    return target


def truncated(name: str, target: Path, keep: int | float) -> Path:
    data = Path(fixture_path(name)).read_bytes()
    size = int(len(data) * keep) if isinstance(keep, float) else (keep if keep >= 0 else len(data) + keep)
    target.write_bytes(data[:size])
    return target


def edit_h5(name: str, target: Path, edit: Callable[[h5py.File], None]) -> Path:
    copy_fixture(name, target)
    with h5py.File(target, "r+") as handle:
        edit(handle)
    return target


def edit_h5_config(name: str, target: Path, edit: Callable[[dict], None]) -> Path:
    def change(handle):
        config = json.loads(handle.attrs["model_config"])
        edit(config)
        handle.attrs["model_config"] = json.dumps(config)

    return edit_h5(name, target, change)


def rezip(name: str, target: Path, members: dict[str, bytes | None]) -> Path:
    """The fixture's archive with some members replaced (bytes) or removed (None)."""
    with zipfile.ZipFile(fixture_path(name)) as source, zipfile.ZipFile(target, "w") as out:
        for item in source.namelist():
            if item in members:
                if members[item] is not None:
                    out.writestr(item, members[item])
            else:
                out.writestr(item, source.read(item))
        for item, data in members.items():
            if item not in source.namelist() and data is not None:
                out.writestr(item, data)
    return target


def edit_keras_config(name: str, target: Path, edit: Callable[[dict], None]) -> Path:
    with zipfile.ZipFile(fixture_path(name)) as source:
        config = json.loads(source.read("config.json"))
    edit(config)
    return rezip(name, target, {"config.json": json.dumps(config).encode()})


def edit_keras_weights(name: str, target: Path, edit: Callable[[h5py.File], None]) -> Path:
    with zipfile.ZipFile(fixture_path(name)) as source:
        buffer = io.BytesIO(source.read("model.weights.h5"))
    with h5py.File(buffer, "r+") as handle:
        edit(handle)
    return rezip(name, target, {"model.weights.h5": buffer.getvalue()})


def layer_of(config: dict, name: str) -> dict:
    return next(layer for layer in config["config"]["layers"] if layer["name"] == name)


def set_first_input(config: dict, name: str, source: str, node: int = 0) -> None:
    """Make layer ``name`` read its (first) input from call ``node`` of layer ``source``."""
    layer_of(config, name)["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = [source, node, 0]


def keras_bn1_group(handle: h5py.File) -> h5py.Group:
    """The group of layer 'bn1' in a .keras weights file (named by Keras' object tracking)."""
    return next(g for g in handle["layers"].values() if "vars" in g and g["vars"].attrs.get("name") in ("bn1", b"bn1"))


def replace_dataset(group: h5py.Group, name: str, data) -> None:
    del group[name]
    group.create_dataset(name, data=data)


def huge_dataset(group: h5py.Group, name: str) -> None:
    """A declared shape of 10^12 float32 elements (4 TB) whose data is never stored."""
    del group[name]
    group.create_dataset(name, shape=(10**6, 10**6), dtype="float32")


# --- the corpus: case name -> builder(directory) -> path ------------------------------------------


def written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _random(directory: Path, suffix: str) -> Path:
    return written(directory / f"random{suffix}", np.random.default_rng(7).bytes(4096))


CASES: dict[str, Callable[[Path], Path]] = {
    "empty file": lambda d: written(d / "empty.h5", b""),
    "random bytes .h5": lambda d: _random(d, ".h5"),
    "random bytes .keras": lambda d: _random(d, ".keras"),
    "random bytes, no extension": lambda d: _random(d, ""),
    "text file named .h5": lambda d: written(d / "notes.h5", b"hello\n"),
    "directory named .keras": lambda d: (d / "dir.keras").mkdir() or d / "dir.keras",
    "h5 truncated after its signature": lambda d: truncated(GOOD_H5, d / "t8.h5", 8),
    "h5 truncated at 1 KB": lambda d: truncated(GOOD_H5, d / "t1k.h5", 1024),
    "h5 truncated at half": lambda d: truncated(GOOD_H5, d / "thalf.h5", 0.5),
    "h5 missing its last 64 bytes": lambda d: truncated(GOOD_H5, d / "tend.h5", -64),
    "keras truncated after its signature": lambda d: truncated(GOOD_KERAS, d / "t4.keras", 4),
    "keras truncated at 1 KB": lambda d: truncated(GOOD_KERAS, d / "t1k.keras", 1024),
    "keras truncated at half": lambda d: truncated(GOOD_KERAS, d / "thalf.keras", 0.5),
    "keras missing its last 20 bytes": lambda d: truncated(GOOD_KERAS, d / "tend.keras", -20),
    "zip that is not a Keras file": lambda d: _plain_zip(d / "other.keras"),
    "keras config not JSON": lambda d: rezip(GOOD_KERAS, d / "notjson.keras", {"config.json": b"{not json"}),
    "keras config a JSON list": lambda d: rezip(GOOD_KERAS, d / "list.keras", {"config.json": b"[1, 2]"}),
    "keras without weights file": lambda d: rezip(GOOD_KERAS, d / "noweights.keras", {"model.weights.h5": None}),
    "keras weights not HDF5": lambda d: rezip(GOOD_KERAS, d / "badweights.keras", {"model.weights.h5": b"garbage"}),
    "keras config names a missing weight": lambda d: edit_keras_weights(GOOD_KERAS, d / "missing_weight.keras", lambda h: h.__delitem__(keras_bn1_group(h).name)),
    "keras weight with a missing variable": lambda d: edit_keras_weights(GOOD_KERAS, d / "missing_var.keras", lambda h: keras_bn1_group(h)["vars"].__delitem__("3")),
    "h5 weights but no config": lambda d: edit_h5(GOOD_H5, d / "noconfig.h5", lambda h: h.attrs.__delitem__("model_config")),
    "h5 config not JSON": lambda d: edit_h5(GOOD_H5, d / "badjson.h5", lambda h: h.attrs.__setitem__("model_config", "{oops")),
    "h5 config a JSON number": lambda d: edit_h5(GOOD_H5, d / "number.h5", lambda h: h.attrs.__setitem__("model_config", "42")),
    "h5 config with a layer without config": lambda d: edit_h5_config(GOOD_H5, d / "noconf.h5", lambda c: layer_of(c, "bn1").__delitem__("config")),
    "h5 config with a missing layer": lambda d: edit_h5_config(GOOD_H5, d / "missing_layer.h5", lambda c: set_first_input(c, "bn1", "ghost")),
    "keras config with a missing layer": lambda d: edit_keras_config(GOOD_KERAS, d / "missing_layer.keras", lambda c: set_first_input(c, "bn1", "ghost")),
    "h5 config output names a missing layer": lambda d: edit_h5_config(GOOD_H5, d / "missing_out.h5", lambda c: c["config"].__setitem__("output_layers", [["ghost", 0, 0]])),
    "h5 config with a cycle": lambda d: edit_h5_config(GOOD_H5, d / "cycle.h5", lambda c: set_first_input(c, "conv1", "relu1")),
    "keras config with a cycle": lambda d: edit_keras_config(GOOD_KERAS, d / "cycle.keras", lambda c: set_first_input(c, "conv1", "relu1")),
    "h5 config with a dangling inbound node": lambda d: edit_h5_config(GOOD_H5, d / "dangling.h5", lambda c: set_first_input(c, "bn1", "conv1", 5)),
    "keras config with a dangling inbound node": lambda d: edit_keras_config(GOOD_KERAS, d / "dangling.keras", lambda c: set_first_input(c, "bn1", "conv1", 5)),
    "h5 config with a duplicate layer name": lambda d: edit_h5_config(GOOD_H5, d / "dup.h5", lambda c: layer_of(c, "bn2").__setitem__("name", "bn1")),
    "h5 with a mismatched weight shape": lambda d: edit_h5(GOOD_H5, d / "shape.h5", lambda h: replace_dataset(h["model_weights/bn1"], "bn1/gamma", np.ones(16, "float32"))),
    "keras with a mismatched weight shape": lambda d: edit_keras_weights(GOOD_KERAS, d / "shape.keras", lambda h: replace_dataset(keras_bn1_group(h)["vars"], "0", np.ones(16, "float32"))),
    "h5 with a kernel of the wrong rank": lambda d: edit_h5(GOOD_H5, d / "rank.h5", lambda h: replace_dataset(h["model_weights/conv1"], "conv1/kernel", np.ones((3, 3, 8), "float32"))),
    "h5 with a weight of 10^12 elements": lambda d: edit_h5(GOOD_H5, d / "huge.h5", lambda h: huge_dataset(h["model_weights/bn1"], "bn1/gamma")),
    "keras with a weight of 10^12 elements": lambda d: edit_keras_weights(GOOD_KERAS, d / "huge.keras", lambda h: huge_dataset(keras_bn1_group(h)["vars"], "0")),
    "h5 with a string weight": lambda d: edit_h5(GOOD_H5, d / "strweight.h5", lambda h: replace_dataset(h["model_weights/bn1"], "bn1/gamma", np.array([b"x"] * 8))),
    "h5 config declaring 10^12 units": lambda d: edit_h5_config(GOOD_H5, d / "units.h5", lambda c: layer_of(c, "logits")["config"].__setitem__("units", 10**12)),
    "keras config declaring a 10^12-element input": lambda d: edit_keras_config(GOOD_KERAS, d / "bigin.keras", lambda c: layer_of(c, "input")["config"].__setitem__("batch_shape", [None, 10**6, 10**6, 3])),
}


def saved_model(target: Path, edit: Callable[[Path], object] = lambda d: None) -> Path:
    edit(copy_saved_model(fixture_path(SAVED_MODEL), target))
    return target


def truncate_file(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def without_first_layer_variable(entries: dict) -> None:
    del entries[next(key for key in sorted(entries) if key.startswith("variables/"))]


def json_pair(directory: Path, stem: str, weights_from: str = JSON_MODEL, edit: Callable[[h5py.File], None] | None = None,
              architecture: bytes | None = None) -> Path:
    """``stem.json`` + ``stem.h5`` (weights found by stem)."""
    target = directory / f"{stem}.json"
    target.write_bytes(architecture if architecture is not None else Path(fixture_path(JSON_MODEL + ".json")).read_bytes())
    shutil.copy(fixture_path(weights_from + ".h5"), directory / f"{stem}.h5")
    if edit is not None:
        with h5py.File(directory / f"{stem}.h5", "r+") as handle:
            edit(handle)
    return target


CASES.update({
    "savedmodel without variables/": lambda d: saved_model(d / "novars", lambda t: shutil.rmtree(t / "variables")),
    "savedmodel with its checkpoint data truncated": lambda d: saved_model(d / "tdata", lambda t: truncate_file(t / "variables" / "variables.data-00000-of-00001", 0.5)),
    "savedmodel with its checkpoint index truncated": lambda d: saved_model(d / "tindex", lambda t: truncate_file(t / "variables" / "variables.index", 0.5)),
    "savedmodel keras_metadata.pb not protobuf": lambda d: saved_model(d / "badmeta", lambda t: (t / "keras_metadata.pb").write_bytes(b"\xff\xff\xff hello")),
    "savedmodel keras_metadata.pb holding no model": lambda d: saved_model(d / "nomodel", lambda t: edit_metadata(t, lambda nodes: nodes.clear())),
    "savedmodel keras_metadata.pb metadata not JSON": lambda d: saved_model(d / "metajson", lambda t: edit_metadata(t, lambda nodes: nodes[0].__setitem__("metadata", "x"))),
    "savedmodel checkpoint missing a layer's variable": lambda d: saved_model(d / "novar", lambda t: edit_index(t, without_first_layer_variable)),
    "savedmodel without keras_metadata.pb (tf.saved_model.save, model.export)": lambda d: saved_model(d / "export", lambda t: (t / "keras_metadata.pb").unlink()),
    "directory that is not a SavedModel": lambda d: (d / "plain_dir").mkdir() or d / "plain_dir",
    "tf.keras .keras missing a layer's weights": lambda d: edit_keras_weights(TF_KERAS, d / "tfk_noweights.keras", lambda h: h.__delitem__("layers/dense")),
    "tf.keras .keras truncated at half": lambda d: truncated(TF_KERAS, d / "tfk_half.keras", 0.5),
    "json that is not a model": lambda d: json_pair(d, "notmodel", architecture=b'{"name": "x", "layers": []}'),
    "json not JSON": lambda d: json_pair(d, "notjson", architecture=b"model: resnet\n"),
    "json without weights beside it": lambda d: written(d / "alone.json", Path(fixture_path(JSON_MODEL + ".json")).read_bytes()),
    "json with the weights of another model": lambda d: json_pair(d, "foreign", weights_from="keras2/tfk_nested"),
    "json with a weight shape that does not match": lambda d: json_pair(d, "shape", edit=lambda h: replace_dataset(h["head"], "head/kernel:0", np.ones((3, 3), "float32"))),
})


def _plain_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not a model")
    return path


# --- commands: argv for any registered command ------------------------------------------------------

# Known commands: argv templates. {input} is the broken file, {good} a valid model, {output} a path
# in an empty directory that must stay empty. Anything else is derived from the command's parameters.
TEMPLATES: dict[str, list[str]] = {
    "inspect": ["{input}"],
    "verify": ["{input}", "{good}"],
    "verify-candidate": ["{good}", "{input}"],  # the broken file as the candidate
    "diff": ["{input}", "{good}"],
    "features": ["{input}", "{data}", "--output", "{output_npy}"],
}
# Values for required options a command may have (a layer name of convbn works for every case:
# the broken input is rejected before any layer is looked up).
OPTION_VALUES = {"layer": "relu1", "at": "relu1", "cut": "relu1", "freeze": "conv1", "name": "relu1"}


def registered_commands() -> dict:
    """Command name -> click command (Typer vendors its own click, so duck typing below)."""
    from surgeon.cli import app

    group = typer.main.get_command(app)
    return dict(getattr(group, "commands", None) or {group.name: group})


def writes_output(command) -> bool:
    return any("--output" in p.opts for p in command.params)


def argv_for(name: str, command, values: dict[str, str]) -> list[str]:
    template = TEMPLATES.get(name)
    if template is None:
        template, first = [], True
        for param in command.params:
            if param.param_type_name == "argument":
                template.append("{input}" if first else "{good}")
                first = False
            elif "--output" in param.opts:
                template += ["--output", "{output}"]
            elif param.required:
                kind = type(getattr(param, "type", None)).__name__
                if kind == "Choice":
                    value = str(param.type.choices[0])
                elif kind in ("IntParamType", "FloatParamType", "IntRange", "FloatRange"):
                    value = "1"
                else:
                    value = next((v for k, v in OPTION_VALUES.items() if k in param.name.lower()), "relu1")
                template += [param.opts[0], value]
    elif writes_output(command) and not any(part.startswith("{output") for part in template):
        template = template + ["--output", "{output}"]
    values = {"output_npy": os.path.splitext(values.get("output", "out"))[0] + ".npy", **values}  # unless given
    return [part.format(**values) for part in template]


def input_data(directory: Path) -> Path:
    """Inputs for convbn / lambda_marker (16x16 RGB), for commands that take data."""
    path = directory / "data.npy"
    np.save(path, np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype("float32"))
    return path


CANDIDATE_CASES = {
    "empty file", "random bytes .keras", "h5 truncated at half", "zip that is not a Keras file", "keras config not JSON",
    "keras config names a missing weight", "h5 config with a cycle", "h5 with a mismatched weight shape", "h5 with a weight of 10^12 elements",
}
COMMAND_NAMES = ["inspect", "verify", "verify-candidate", "fold-bn", "split", "features", "freeze", "prepare", "diff", "convert"]


def command_for(name: str):
    base = "verify" if name == "verify-candidate" else name
    commands = registered_commands()
    if base not in commands:
        pytest.skip(f"command '{base}' is not registered yet")
    return base, commands[base]


def run_cli(argv: list[str]):
    from surgeon.cli import app

    return CliRunner().invoke(app, argv, catch_exceptions=True)


def checksum(path: Path) -> str | None:
    if path.is_dir() or not path.exists():
        return None
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except PermissionError:
        return None


def assert_one_clear_line(result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("surgeon: error: "), lines[0]
    # The generic catch-all in commands/common.py means surgeon did not foresee the failure.
    assert "please report" not in lines[0], lines[0]
    assert "Traceback" not in result.stdout + result.stderr


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("corpus")
    return {name: build(directory) for name, build in CASES.items()}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    return input_data(tmp_path_factory.mktemp("data"))


@pytest.mark.parametrize("command_name", COMMAND_NAMES)
@pytest.mark.parametrize("case", list(CASES))
def test_every_command_rejects_every_broken_input_with_exit_2_and_one_line(case, command_name, corpus, data_file, tmp_path):
    if command_name == "verify-candidate" and case not in CANDIDATE_CASES:
        pytest.skip("a broken candidate is checked on a sample of cases: each one builds the reference with TensorFlow")
    base, command = command_for(command_name)
    broken = corpus[case]
    before = checksum(broken)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = [base] + argv_for(command_name, command, {"input": str(broken), "good": fixture_path(GOOD_H5), "output": str(out_dir / "out.h5"), "data": str(data_file)})
    result = run_cli(argv)
    assert_one_clear_line(result)
    assert list(out_dir.iterdir()) == [], "a failed command left files behind"
    assert checksum(broken) == before, "the input was modified"


@pytest.fixture
def unreadable(tmp_path, monkeypatch) -> Path:
    """A model file the user may not read. Root reads anything, so there the open() is refused instead."""
    path = copy_fixture(GOOD_H5, tmp_path / "secret.h5")
    path.chmod(0)
    if os.geteuid() == 0:
        import surgeon.io.files as files

        def refuse(file, *args, **kwargs):
            if os.path.abspath(file) == str(path):
                raise PermissionError(13, "Permission denied", str(file))
            return open(file, *args, **kwargs)

        monkeypatch.setattr(files, "open", refuse, raising=False)
    yield path
    path.chmod(0o644)


@pytest.mark.parametrize("command_name", COMMAND_NAMES)
def test_every_command_rejects_an_unreadable_file(command_name, unreadable, data_file, tmp_path):
    base, command = command_for(command_name)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = [base] + argv_for(command_name, command, {"input": str(unreadable), "good": fixture_path(GOOD_H5), "output": str(out_dir / "out.h5"), "data": str(data_file)})
    result = run_cli(argv)
    assert_one_clear_line(result)
    assert "permission denied" in result.stderr
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("command_name", [n for n in COMMAND_NAMES if n not in ("inspect", "verify", "verify-candidate", "diff")])
@pytest.mark.parametrize("problem", ["missing directory", "existing output", "output is the input", "no extension"])
def test_every_writing_command_refuses_a_bad_output_path(command_name, problem, data_file, tmp_path):
    base, command = command_for(command_name)
    if not writes_output(command):
        pytest.skip(f"'{base}' writes no file")
    good = copy_fixture(GOOD_H5, tmp_path / "model.h5")
    before = checksum(good)
    output = {
        "missing directory": tmp_path / "missing" / "out.h5",
        "existing output": tmp_path / "existing.h5",
        "output is the input": good,
        "no extension": tmp_path / "out",
    }[problem]
    if problem == "existing output":
        output.write_bytes(b"keep me")
    # features writes .npy: give it the bad path itself, not the .npy derived from it.
    values = {"input": str(good), "good": fixture_path(GOOD_H5), "output": str(output), "output_npy": str(output), "data": str(data_file)}
    argv = [base] + argv_for(command_name, command, values)
    result = run_cli(argv)
    assert_one_clear_line(result)
    assert checksum(good) == before
    if problem == "existing output":
        assert output.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model.h5"] + (["existing.h5"] if problem == "existing output" else []))


def test_the_corpus_cases_are_really_broken_for_plain_readers(corpus):
    """Guard against a builder that silently produced a valid file: surgeon's reader refuses each one."""
    from surgeon.errors import SurgeonError
    from surgeon.inspection import inspect_spec
    from surgeon.io import read_model

    accepted = []
    for case, path in corpus.items():
        try:
            inspect_spec(read_model(str(path)))
        except SurgeonError:
            continue
        accepted.append(case)
    assert accepted == []
