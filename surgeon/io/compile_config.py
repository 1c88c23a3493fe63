"""Convert between the two ways Keras files store how a model was compiled.

``.h5`` files hold ``training_config`` (``optimizer_config`` with class name and config);
``.keras`` files hold ``compile_config`` (a serialized optimizer object). The spec keeps the
``.keras`` form. Only the optimizer's *config* travels: its slot variables belong to the variable
set it was built for, and restoring them into a model with other trainable flags is what makes
Keras fail with "Unknown variable" (see ``inspect``'s hazards).
"""

from __future__ import annotations

import copy

# Short and Keras 2 loss names -> the full Keras 3 name. Keras resolves some aliases but writes them
# back badly (Keras 3.15 stores "mse" in an .h5 training config as keras.metrics.mse, which
# load_model then refuses: see fixtures/README.md), and others ("cce", "logcosh") not at all.
LOSS_NAMES = {
    "mse": "mean_squared_error",
    "mae": "mean_absolute_error",
    "mape": "mean_absolute_percentage_error",
    "msle": "mean_squared_logarithmic_error",
    "bce": "binary_crossentropy",
    "cce": "categorical_crossentropy",
    "scce": "sparse_categorical_crossentropy",
    "kld": "kl_divergence",
    "logcosh": "log_cosh",
    "cosine_proximity": "cosine_similarity",
    "kullback_leibler_divergence": "kl_divergence",
}

# Lower-case optimizer name -> Keras class name (keras.optimizers.get accepts either; files store the class).
OPTIMIZER_NAMES = {name.lower(): name for name in (
    "SGD", "RMSprop", "Adam", "AdamW", "Adadelta", "Adagrad", "Adamax", "Adafactor", "Nadam", "Ftrl", "Lion", "Lamb",
)}


# What Keras' own legacy saver writes for ``compile(optimizer, loss)`` with nothing else given
# (Model._compile_config, keras/src/legacy/saving/saving_utils.py: model_metadata). Its loader
# reads some of these keys unconditionally (``training_config["loss_weights"]``), so a compile
# config made from command-line options alone must still carry every one of them.
TRAINING_CONFIG_DEFAULTS = {
    "loss": None, "loss_weights": None, "metrics": None, "weighted_metrics": None,
    "run_eagerly": False, "steps_per_execution": 1, "jit_compile": False,
}
SHARED_KEYS = tuple(TRAINING_CONFIG_DEFAULTS)


def from_training_config(training_config: dict | None) -> dict | None:
    if not training_config:
        return None
    compile_config = {key: copy.deepcopy(training_config.get(key)) for key in SHARED_KEYS if key in training_config}
    # Serialized loss/metric objects in an .h5 have no "module"; Keras' compile_from_config
    # cannot locate e.g. SparseCategoricalCrossentropy without it.
    compile_config["loss"] = _with_module(compile_config.get("loss"), "keras.losses")
    for key in ("metrics", "weighted_metrics"):
        compile_config[key] = _with_module(compile_config.get(key), "keras.metrics")
    optimizer = training_config.get("optimizer_config")
    if optimizer:
        compile_config["optimizer"] = {
            "module": "keras.optimizers",
            "class_name": optimizer["class_name"],
            "config": copy.deepcopy(optimizer.get("config", {})),
            "registered_name": None,
        }
    return compile_config


def _with_module(value, module: str):
    if isinstance(value, dict) and "class_name" in value and "config" in value:
        return {"module": module, "registered_name": None, **value}
    if isinstance(value, dict):
        return {key: _with_module(item, module) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_module(item, module) for item in value]
    return value


def to_training_config(compile_config: dict | None) -> dict | None:
    if not compile_config:
        return None
    training_config = {key: _strip_modules(copy.deepcopy(compile_config.get(key, default)))
                       for key, default in TRAINING_CONFIG_DEFAULTS.items()}
    for key in ("loss", "metrics", "weighted_metrics"):
        if key in training_config:
            training_config[key] = _spell_out(training_config[key])
    optimizer = compile_config.get("optimizer")
    if isinstance(optimizer, dict):
        training_config["optimizer_config"] = {"class_name": optimizer["class_name"], "config": optimizer.get("config", {})}
    elif isinstance(optimizer, str):
        training_config["optimizer_config"] = {"class_name": optimizer, "config": {}}
    return training_config


def _spell_out(value):
    """Keras 3 reads "mse" back from a .keras file but not from an .h5 training_config."""
    if isinstance(value, str):
        return LOSS_NAMES.get(value, value)
    if isinstance(value, list):
        return [_spell_out(v) for v in value]
    if isinstance(value, dict) and "class_name" not in value:
        return {k: _spell_out(v) for k, v in value.items()}
    return value


def _strip_modules(value):
    """The legacy h5 form has no ``module``/``registered_name`` keys on serialized objects."""
    if isinstance(value, dict):
        return {k: _strip_modules(v) for k, v in value.items() if k not in ("module", "registered_name")}
    if isinstance(value, list):
        return [_strip_modules(v) for v in value]
    return value
