"""Convert between the two ways Keras files store how a model was compiled.

``.h5`` files hold ``training_config`` (``optimizer_config`` with class name and config);
``.keras`` files hold ``compile_config`` (a serialized optimizer object). The spec keeps the
``.keras`` form. Only the optimizer's *config* travels: its slot variables belong to the variable
set it was built for, and restoring them into a model with other trainable flags is what makes
Keras fail with "Unknown variable" (see ``inspect``'s hazards).

A Keras 2 ``training_config`` is translated here too (``translate_training_config``), with the same
loss and optimizer names the Keras 3 ``.h5`` writer and ``recompile`` use.
"""

from __future__ import annotations

import copy
import json

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


SHARED_KEYS = ("loss", "loss_weights", "metrics", "weighted_metrics", "run_eagerly", "steps_per_execution", "jit_compile")


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
    training_config = {key: _strip_modules(copy.deepcopy(compile_config.get(key))) for key in SHARED_KEYS if key in compile_config}
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


# Keras 2 training configs

OPTIMIZER_DROPPED_KEYS = ("jit_compile", "is_legacy_optimizer")
LOSS_REDUCTIONS = {"auto": "sum_over_batch_size", "sum_over_batch_size": "sum_over_batch_size",
                   "sum": "sum", "none": None}


def _translate_optimizer(opt: dict, notes: list) -> dict:
    opt = copy.deepcopy(opt)
    cls = opt.get("class_name", "")
    base = cls.split(">")[-1]
    new_cls = OPTIMIZER_NAMES.get(base.lower(), base)
    if new_cls != cls:
        notes.append(f"optimizer class {cls} written as {new_cls}")
    config = opt.get("config", {})
    if "lr" in config:
        config["learning_rate"] = config.pop("lr")
        notes.append("optimizer: lr renamed learning_rate")
    if "decay" in config:
        d = config.pop("decay")
        if d:
            notes.append(
                f"optimizer: learning-rate decay {d} dropped (Keras 3 has no 'decay'; use a "
                "keras.optimizers.schedules.InverseTimeDecay learning rate to keep it)"
            )
        else:
            notes.append("optimizer: decay 0 dropped")
    for k in OPTIMIZER_DROPPED_KEYS:
        if k in config:
            config.pop(k)
            notes.append(f"optimizer: dropped Keras 2 key {k!r}")
    if isinstance(config.get("name"), str) and config["name"] == base and base != base.lower():
        config["name"] = base.lower()
    return {"class_name": new_cls, "config": config}


def _translate_loss(loss, notes):
    if isinstance(loss, str):
        if loss in LOSS_NAMES:
            notes.append(f"loss {loss} written as {LOSS_NAMES[loss]}")
            return LOSS_NAMES[loss]
        return loss
    if isinstance(loss, dict) and "class_name" in loss:
        loss = copy.deepcopy(loss)
        c = loss.get("config", {})
        if "reduction" in c and c["reduction"] in LOSS_REDUCTIONS and c["reduction"] != (
                LOSS_REDUCTIONS[c["reduction"]]):
            notes.append(f"loss reduction {c['reduction']!r} written as "
                         f"{LOSS_REDUCTIONS[c['reduction']]!r}")
            c["reduction"] = LOSS_REDUCTIONS[c["reduction"]]
        c.pop("fn", None)
        return loss
    if isinstance(loss, dict):
        return {k: _translate_loss(v, notes) for k, v in loss.items()}
    if isinstance(loss, list):
        return [_translate_loss(v, notes) for v in loss]
    return loss


def _translate_metric(m, notes):
    if isinstance(m, dict) and m.get("class_name") == "MeanMetricWrapper":
        c = m.get("config", {})
        fn = c.get("fn")
        name = c.get("name")
        out = name if name in ("accuracy", "acc") else (fn or name)
        notes.append(f"metric MeanMetricWrapper({fn}) written as {out!r}")
        return out
    if isinstance(m, str) and m in LOSS_NAMES:
        notes.append(f"metric {m} written as {LOSS_NAMES[m]}")
        return LOSS_NAMES[m]
    if isinstance(m, list):
        return [_translate_metric(v, notes) for v in m]
    if isinstance(m, dict) and "class_name" not in m:
        return {k: _translate_metric(v, notes) for k, v in m.items()}
    return m


def _flatten_single_output_metrics(metrics):
    # tf.keras 2 writes metrics per output as a list of lists even for one output
    if isinstance(metrics, list) and len(metrics) == 1 and isinstance(metrics[0], list):
        return metrics[0]
    return metrics


def translate_training_config(training_config: dict, notes: list | None = None) -> dict:
    """Translate a Keras 2 ``training_config`` into what Keras 3 reads back from an ``.h5``.

    Optimizer: class names normalised (``Custom>Adam``/``adam`` -> ``Adam``), ``lr`` ->
    ``learning_rate``, ``decay`` and other Keras 2-only keys dropped. Each change is appended to
    ``notes`` when a list is given. Loss: old names and ``reduction: auto``
    fixed. Metrics: ``MeanMetricWrapper`` unwrapped to its function name. ``sample_weight_mode``
    dropped.
    """
    if isinstance(training_config, (str, bytes)):
        training_config = json.loads(training_config)
    training = copy.deepcopy(training_config)
    notes = notes if notes is not None else []
    if training.get("optimizer_config"):
        training["optimizer_config"] = _translate_optimizer(training["optimizer_config"], notes)
    if "loss" in training:
        training["loss"] = _translate_loss(training["loss"], notes)
    for k in ("metrics", "weighted_metrics"):
        if training.get(k) is not None:
            training[k] = _flatten_single_output_metrics(_translate_metric(training[k], notes))
    if "sample_weight_mode" in training:
        training.pop("sample_weight_mode")
        notes.append("sample_weight_mode dropped (Keras 3 has none)")
    training.setdefault("loss_weights", None)
    return training
