"""Config-key rules: one function per Keras 2 key Keras 3 reads differently, run on every layer."""

from __future__ import annotations

import copy
from typing import Callable

from surgeon.errors import SurgeonError
from surgeon.io.keras2.context import TranslationContext, policy_of


def _rule_dtype(cls, config, context, name):
    if cls == "InputLayer":
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = (config["dtype"].get("config") or {}).get("name", "float32")
        return config
    if "dtype" in config and not (
        isinstance(config["dtype"], dict) and config["dtype"].get("class_name") == "DTypePolicy"
    ):
        config["dtype"] = policy_of(config["dtype"])
    return config


def _rule_input_layer(cls, config, context, name):
    if cls != "InputLayer":
        return config
    if "batch_input_shape" in config:
        config["batch_shape"] = config.pop("batch_input_shape")
        context.note("InputLayer: batch_input_shape renamed batch_shape")
    config.pop("input_tensor", None)
    if config.get("ragged"):
        raise SurgeonError(
            f"layer {name!r}: ragged inputs have no Keras 3 equivalent; make the input dense in "
            "the original model and save again"
        )
    return config


def _rule_batch_input_shape(cls, config, context, name):
    # on a non-input layer of a functional model it is redundant (Sequential handles it first)
    if cls != "InputLayer":
        for k in ("batch_input_shape", "input_shape", "input_dim", "batch_size"):
            if k in config:
                config.pop(k)
                context.note(f"dropped redundant {k!r} from a non-input layer", name)
    return config


def _rule_groups(cls, config, context, name):
    if cls in ("DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D"):
        if "groups" in config:
            if config.pop("groups") not in (1, None):
                raise SurgeonError(f"layer {name!r} ({cls}) has groups != 1, which Keras 3 lacks")
            context.note(f"{cls}: dropped the 'groups' key Keras 3 does not accept", name)
    if cls in ("SeparableConv1D", "SeparableConv2D"):
        dropped = [k for k in ("kernel_initializer", "kernel_regularizer", "kernel_constraint")
                   if k in config]
        for k in dropped:
            config.pop(k)
        if dropped:
            context.note(f"{cls}: dropped unused kernel_* keys (Keras 3 has depthwise_*/pointwise_*)",
                     name)
    return config


def _rule_bn(cls, config, context, name):
    if cls not in ("BatchNormalization", "SyncBatchNormalization"):
        return config
    axis = config.get("axis", -1)
    if isinstance(axis, list):
        if len(axis) != 1:
            raise SurgeonError(
                f"layer {name!r}: BatchNormalization over several axes {axis} has no Keras 3 "
                "equivalent"
            )
        config["axis"] = int(axis[0])
        context.note("BatchNormalization: axis list [n] written as int n", name)
    if config.pop("renorm", False):
        raise SurgeonError(
            f"layer {name!r}: BatchNormalization(renorm=True) has no Keras 3 equivalent; "
            "rebuild the model without renorm"
        )
    if config.pop("virtual_batch_size", None):
        raise SurgeonError(
            f"layer {name!r}: BatchNormalization(virtual_batch_size=...) has no Keras 3 "
            "equivalent"
        )
    dropped = [k for k in ("fused", "renorm_clipping", "renorm_momentum", "adjustment")
               if k in config]
    for k in dropped:
        config.pop(k)
    if dropped:
        context.note("BatchNormalization: dropped Keras 2 keys fused/renorm_*/adjustment", name)
    if cls == "SyncBatchNormalization":
        context.note("SyncBatchNormalization written as BatchNormalization(synchronized=True)", name)
        config["synchronized"] = True
    return config


def _fix_initializer(init, context, name):
    if isinstance(init, dict) and init.get("class_name") == "VarianceScaling":
        c = init.get("config", {})
        if c.get("distribution") == "normal":
            c["distribution"] = "truncated_normal"
            context.note("VarianceScaling(distribution='normal') written as 'truncated_normal'", name)
    return init


def _rule_initializers(cls, config, context, name):
    for k, v in list(config.items()):
        if k.endswith("_initializer"):
            config[k] = _fix_initializer(v, context, name)
    return config


def _rule_rnn(cls, config, context, name):
    if cls in ("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM2D"):
        if config.pop("time_major", False):
            raise SurgeonError(f"layer {name!r}: time_major RNNs have no Keras 3 equivalent")
    return config


# Layers private to Keras 2's applications (ConvNeXt's LayerScale and StochasticDepth,
# InceptionResNetV2's CustomScaleLayer) keep their class and config here: Keras 3's applications
# define the same classes with the same config keys, and the door rewrites them into built-in
# layers right after this translation (keras3_fixups), for both dialects alike.


def _rule_tf_op_layer(cls, config, context, name):
    if cls == "TensorFlowOpLayer":
        raise SurgeonError(
            f"layer {name!r} is a TensorFlowOpLayer (raw TF op from TF 2.0-2.3) with no Keras 3 "
            "equivalent; re-save the model with TF >= 2.4 or replace the op by a Keras layer"
        )
    return config


CONFIG_RULES: list[Callable] = [
    _rule_tf_op_layer,
    _rule_dtype,
    _rule_input_layer,
    _rule_batch_input_shape,
    _rule_groups,
    _rule_bn,
    _rule_initializers,
    _rule_rnn,
]

CLASS_RENAMES = {
    "Model": "Functional",
    # tf.keras 2.x registers InceptionResNetV2's private layer under the "Custom" package; the door
    # (keras3_fixups) knows it by its bare name, as Keras 3 writes it.
    "Custom>CustomScaleLayer": "CustomScaleLayer",
}


def translate_layer_config(cls: str, config: dict, context: TranslationContext, name: str) -> tuple[str, dict]:
    config = copy.deepcopy(config)
    if cls in CLASS_RENAMES:
        context.note(f"class {cls} written as {CLASS_RENAMES[cls]}", name)
        cls = CLASS_RENAMES[cls]
    for rule in CONFIG_RULES:
        config = rule(cls, config, context, name)
    if cls == "SyncBatchNormalization":
        cls = "BatchNormalization"
    return cls, config
