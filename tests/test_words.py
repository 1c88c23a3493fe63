"""What people read on screen (issue 11 item 6): said once, true, complete, never cut."""

from __future__ import annotations

import re

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")

from surgeon.cli import app  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def invoke(*args, columns: int = 80):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": str(columns)})


@pytest.fixture(scope="module")
def nothing_frozen(tmp_path_factory):
    """Three BNs, every layer trainable (a model straight from keras.applications, say)."""
    inputs = keras.Input((8, 8, 3))
    x = inputs
    for i in range(3):
        x = keras.layers.BatchNormalization(name=f"bn{i}")(keras.layers.Conv2D(4, 3, padding="same", name=f"conv{i}")(x))
    path = tmp_path_factory.mktemp("words") / "trainable.h5"
    keras.Model(inputs, x).save(path)
    return path


def test_fold_bn_with_nothing_frozen_says_so_once_and_writes_nothing(nothing_frozen, tmp_path):
    out = tmp_path / "folded.h5"
    result = invoke("fold-bn", nothing_frozen, "-o", out)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "none of the 3 BatchNormalization layer(s) is frozen" in lines[0]
    assert "--all" in lines[0] and "surgeon prepare" in lines[0]
    assert not out.exists()
    assert invoke("fold-bn", nothing_frozen, "-o", out, "--all", "--no-verify").exit_code == 0 and out.exists()


def test_flags_changed_lists_each_layer_once_with_its_final_change(tmp_path):
    # The base (BNs included) is frozen in the file: --unfreeze unfreezes its BNs, the BN rule freezes them again.
    result = invoke("prepare", FIXTURES / "nested.h5", "-o", tmp_path / "p.h5", "--unfreeze", "base_*", "--no-verify")
    assert result.exit_code == 0, result.output
    table = result.output.split("flags changed")[1].split("fold_bn")[0]
    assert "base_conv1" in table and "base_bn1" not in table  # frozen -> trainable -> frozen: unchanged
    assert table.count("base_conv1") == 1


def test_prepare_shows_the_reason_it_points_to(tmp_path):
    result = invoke("prepare", FIXTURES / "late_freeze.h5", "-o", tmp_path / "p.h5", "--until", "relu1", "--no-verify")
    assert "see 'reason'" in result.output
    left = result.output.split("fold_bn: left")[1]
    assert "reason" in left and "bn2" in left and "trainable" in left


def test_names_wrap_at_80_columns_and_are_never_cut(tmp_path):
    long_name = "efficientnetb0_block6d_expand_conv_with_a_long_suffix_people_type"
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, name=long_name)(inputs)
    keras.Model(inputs, keras.layers.BatchNormalization(name="bn", trainable=False)(x)).save(tmp_path / "long.h5")
    for args in (("inspect", tmp_path / "long.h5"), ("fold-bn", tmp_path / "long.h5", "-o", tmp_path / "f.h5")):
        output = invoke(*args).output
        assert "…" not in output
        assert any(long_name in text for text in column_texts(output)), output


def column_texts(output: str) -> list[str]:
    """Each table column's cells read top to bottom and joined: a wrapped name comes out whole.

    Boxed tables are cut at their "│" borders; borderless ones (inspect's) where the words of
    their header line (the one starting "layer ") start, down to the footnote in parentheses."""
    columns: dict[int, str] = {}
    starts = None
    for line in output.splitlines():
        if line.startswith("│"):
            cells = line.strip("│").split("│")
        elif line.startswith("layer "):
            starts = [match.start() for match in re.finditer(r"\S+(?: \S+)*", line)]  # "output shape" is one
            continue
        elif starts is not None and not line.startswith(("─", "(")):
            cells = [line[start:end] for start, end in zip(starts, starts[1:] + [len(line)])]
        else:
            starts = None if line.startswith("(") else starts
            continue
        for index, cell in enumerate(cells):
            columns[index] = columns.get(index, "") + cell.strip()
    return list(columns.values())


@pytest.mark.parametrize("args, expected", [
    (("freeze", FIXTURES / "late_freeze.h5", "--until", "relu"), ("did you mean", "'relu1'", "'relu2'")),
    (("freeze", FIXTURES / "nested.h5", "--freeze", "base_con*x"), ("did you mean",)),
    (("split", FIXTURES / "nested.h5", "--at", "gapp"), ("did you mean 'gap'",)),
])
def test_a_wrong_layer_name_gets_the_closest_names(tmp_path, args, expected):
    result = invoke(*args, "-o", tmp_path / "out.h5" if args[0] != "split" else tmp_path)
    assert result.exit_code == 2
    assert all(text in result.output for text in expected)


def test_a_long_keras_message_is_cut_between_words_not_inside_one():
    from surgeon.errors import one_line

    text = ("<class 'keras.src.models.functional.Functional'> could not be deserialized properly. Please ensure that "
            "components that are Python object instances (layers, models, etc.) returned by `get_config()` are "
            "explicitly deserialized in the model's `from_config()` method.")
    short = one_line(text, 200)
    assert len(short) <= 200 and short.endswith(" ...")
    assert short[: -len(" ...")].split()[-1] in text.split()  # the last word kept is a whole word
