"""Give the written model a compile config that matches its new variable set.

Given: a compiled input (with optimizer slots for the old trainable variables) or an uncompiled one.
Result: the input's loss, metrics and optimizer *config* (a fresh optimizer: old slot state belongs
to another variable set and is what makes Keras 3 fail with "Unknown variable"), or the loss,
metrics and optimizer named on the command line.
"""

from __future__ import annotations

import copy
import dataclasses

from surgeon.errors import SurgeonError
from surgeon.io.compile_config import LOSS_NAMES, OPTIMIZER_NAMES
from surgeon.passes import PassReport
from surgeon.spec import ModelSpec


@dataclasses.dataclass(frozen=True)
class CompileOptions:
    optimizer: str | None = None
    learning_rate: float | None = None
    loss: str | None = None
    metrics: tuple[str, ...] | None = None

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.optimizer, self.learning_rate, self.loss, self.metrics))


def recompile(spec: ModelSpec, options: CompileOptions | None = None) -> tuple[ModelSpec, PassReport]:
    """Keep (or replace from ``options``) the compile config; never carry optimizer state."""
    options = options or CompileOptions()
    spec = spec.copy()
    report = PassReport("recompile")
    if spec.optimizer_variables:
        report.notes.append(f"dropped {len(spec.optimizer_variables)} stored optimizer variables: the output gets a fresh optimizer")
    spec.optimizer_variables = None
    if not options.given:
        if spec.compile_config is None:
            report.notes.append("the input is not compiled and no compile options were given: written uncompiled")
        else:
            report.changes.append({"what": "compile", "action": "kept", "optimizer": optimizer_name(spec.compile_config)})
        return spec, report
    spec.compile_config = compile_config(spec.compile_config, options)
    report.changes.append({
        "what": "compile", "action": "replaced", "optimizer": optimizer_name(spec.compile_config),
        "learning_rate": spec.compile_config["optimizer"]["config"].get("learning_rate"),
        "loss": spec.compile_config.get("loss"), "metrics": spec.compile_config.get("metrics"),
    })
    return spec, report


def compile_config(current: dict | None, options: CompileOptions) -> dict:
    """A ``.keras``-style compile config (what ``Model.compile_from_config`` takes)."""
    config = copy.deepcopy(current) if current else {}
    if current is None and (options.optimizer is None or options.loss is None):
        raise SurgeonError("the model is not compiled: give both --optimizer and --loss (e.g. --optimizer adam --loss categorical_crossentropy)")
    if options.learning_rate is not None and not options.learning_rate > 0:
        raise SurgeonError(f"--learning-rate must be positive, got {options.learning_rate}")
    if options.optimizer is not None:
        class_name = OPTIMIZER_NAMES.get(options.optimizer.lower())
        if class_name is None:
            raise SurgeonError(f"unknown optimizer '{options.optimizer}'; expected one of {', '.join(sorted(OPTIMIZER_NAMES.values()))}")
        config["optimizer"] = {
            "module": "keras.optimizers", "class_name": class_name,
            "config": {} if options.learning_rate is None else {"learning_rate": float(options.learning_rate)},
            "registered_name": None,
        }
    elif options.learning_rate is not None:
        optimizer = config.get("optimizer")
        if isinstance(optimizer, str):
            optimizer = {"module": "keras.optimizers", "class_name": OPTIMIZER_NAMES.get(optimizer.lower(), optimizer), "config": {}, "registered_name": None}
        if not isinstance(optimizer, dict):
            raise SurgeonError("--learning-rate needs an optimizer: the model has none stored; add --optimizer NAME")
        optimizer.setdefault("config", {})["learning_rate"] = float(options.learning_rate)
        config["optimizer"] = optimizer
    if options.loss is not None:
        config["loss"] = LOSS_NAMES.get(options.loss.lower(), options.loss)
    if options.metrics is not None:
        config["metrics"] = list(options.metrics) or None
    return config


def optimizer_name(config: dict | None) -> str | None:
    optimizer = (config or {}).get("optimizer")
    return optimizer.get("class_name") if isinstance(optimizer, dict) else optimizer
