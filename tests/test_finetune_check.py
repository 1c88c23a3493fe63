"""The fine-tune check as a library function: its verdicts, and that it leaves the caller's process alone.

It runs in a fresh Python process; these tests pin what that must preserve (the caller's registered
classes) and what it must not touch (the caller's seeds and TensorFlow settings), and that the
determinism check still catches a file whose training cannot repeat.
"""

from __future__ import annotations

import numpy as np
import pytest

from surgeon.finetune_check import check_fine_tuning


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


def test_a_file_whose_training_cannot_repeat_fails_the_determinism_check(tmp_path, keras):
    # The Lambda draws from the OS when fit() traces it: each run trains with another constant
    # (the same one twice: 1 chance in 4e9).
    inp = keras.Input((4,))
    hidden = keras.layers.Dense(3, name="dense")(inp)
    scaled = keras.layers.Lambda(lambda x: x * (1.0 + int.from_bytes(__import__("os").urandom(4), "little") / 2**32),
                                 name="unseeded")(hidden)
    path = tmp_path / "unseeded.keras"
    keras.Model(inp, keras.layers.Dense(2, name="head")(scaled)).save(path)

    report = check_fine_tuning(str(path), allow_code=True)

    assert not report.passed and not report.checks["deterministic"]
    assert report.checks["frozen_unchanged"] and report.checks["trainable_moved"]
    assert {p.layer for p in report.problems if p.check == "deterministic"} >= {"dense"}


def test_the_check_leaves_the_callers_seeds_and_tensorflow_settings_alone(tmp_path, keras):
    import tensorflow as tf
    from tensorflow.python.framework import config

    inp = keras.Input((4,))
    path = tmp_path / "small.keras"
    keras.Model(inp, keras.layers.Dense(2, name="head")(inp)).save(path)
    np.random.seed(123)
    expected = np.random.random()
    determinism_before = config.is_op_determinism_enabled()
    threads_before = tf.config.threading.get_inter_op_parallelism_threads()

    np.random.seed(123)
    report = check_fine_tuning(str(path))

    assert report.passed, report.summary()
    assert np.random.random() == expected
    assert config.is_op_determinism_enabled() == determinism_before
    assert tf.config.threading.get_inter_op_parallelism_threads() == threads_before


def test_classes_registered_by_the_caller_load_in_the_checks_process(tmp_path, keras):
    from registered_layers import Scale

    inp = keras.Input((4,))
    path = tmp_path / "custom.keras"
    keras.Model(inp, Scale(name="scale")(keras.layers.Dense(2, name="head")(inp))).save(path)

    report = check_fine_tuning(str(path))

    assert report.passed, report.summary()
    assert report.trainable_layers == 2


def test_a_class_a_fresh_process_cannot_import_makes_the_check_run_here_with_a_note(tmp_path, keras):
    class LocalScale(keras.layers.Layer):  # defined in a function: no fresh process can import it
        def call(self, x):
            return x * 2.0

    inp = keras.Input((4,))
    path = tmp_path / "local.keras"
    keras.Model(inp, LocalScale(name="twice")(keras.layers.Dense(2, name="head")(inp))).save(path)

    with keras.saving.custom_object_scope({"LocalScale": LocalScale}):
        report = check_fine_tuning(str(path))

    assert report.passed, report.summary()
    assert any("ran in this process" in note and "LocalScale" in note for note in report.notes)


def test_a_file_that_is_not_a_model_is_a_failed_check_with_the_reason(tmp_path):
    path = tmp_path / "notes.keras"
    path.write_text("not a model")

    report = check_fine_tuning(str(path))

    assert not report.passed and "does not load with plain Keras" in report.problem


def test_a_class_the_checks_process_cannot_import_is_named_in_one_line(tmp_path, keras):
    import sys
    import types

    ghost = types.ModuleType("surgeon_ghost_module")  # in sys.modules here, on no path a fresh process sees

    class Ghost(keras.layers.Layer):
        def call(self, x):
            return x

    Ghost.__module__, Ghost.__qualname__ = ghost.__name__, "Ghost"
    ghost.Ghost = Ghost
    sys.modules[ghost.__name__] = ghost
    inp = keras.Input((4,))
    path = tmp_path / "ghost.keras"
    keras.Model(inp, keras.layers.Dense(2, name="head")(inp)).save(path)
    registry = keras.saving.get_custom_objects()
    registry["surgeon_tests>Ghost"] = Ghost
    try:
        report = check_fine_tuning(str(path))
    finally:
        del registry["surgeon_tests>Ghost"], sys.modules[ghost.__name__]

    assert not report.passed
    assert "surgeon_ghost_module" in report.problem and "\n" not in report.problem


def test_a_checker_left_unused_stops_its_process_and_leaves_no_files(tmp_path, monkeypatch):
    import tempfile

    from surgeon.finetune_check import fine_tune_checker

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with fine_tune_checker():
        pass

    assert list(tmp_path.iterdir()) == []
