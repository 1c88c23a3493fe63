"""surgeon: rewrite saved Keras models so that fine-tuning does what people expect.

The library API works on files and on in-memory ``keras.Model`` objects::

    import surgeon

    result = surgeon.prepare_file("model.h5", "prepared.h5")      # freeze, fold BN, drop dropout, verify
    print(result.passed, result.verification.max_rel)

    folded, report = surgeon.fold_bn_model(model)                  # keras.Model in, keras.Model out
    base, top, report = surgeon.split_model(model)

Every name below is imported on first use, so ``import surgeon`` does not import TensorFlow.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "SurgeonError": "surgeon.errors",
    "ModelSpec": "surgeon.spec",
    "read_model": "surgeon.io",
    "write_model": "surgeon.io",
    "build_keras_model": "surgeon.io.keras_model",
    "spec_from_keras_model": "surgeon.io.keras_model",
    "inspect_spec": "surgeon.inspection",
    "verify_files": "surgeon.rewrite",
    "verify_model": "surgeon.verify",
    "fold_bn_file": "surgeon.fold",
    "fold_bn_model": "surgeon.fold",
    "split_file": "surgeon.split",
    "split_model": "surgeon.split",
    "extract_features": "surgeon.features",
    "freeze_file": "surgeon.prepare",
    "freeze_model": "surgeon.prepare",
    "prepare_file": "surgeon.prepare",
    "prepare_model": "surgeon.prepare",
    "diff_files": "surgeon.diff",
    "convert_file": "surgeon.convert",
    "check_fine_tuning": "surgeon.finetune_check",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'surgeon' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
