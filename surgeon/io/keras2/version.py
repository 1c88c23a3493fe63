"""Is a config (or a file's ``keras_version``) Keras 2?"""

from __future__ import annotations

import json
import re


def is_keras2(keras_version: str | None) -> bool:
    """True when a file's ``keras_version`` attribute names Keras 2 (``2.1.6``, ``2.15.0``...).

    ``None`` (no attribute) answers False: Keras 3 always writes the attribute, so a caller that
    meets a file without it should sniff the config with :func:`looks_like_keras2`.
    """
    if keras_version is None:
        return False
    if isinstance(keras_version, bytes):
        keras_version = keras_version.decode("utf-8", "replace")
    m = re.match(r"\s*v?(\d+)", str(keras_version))
    return bool(m) and int(m.group(1)) == 2


def looks_like_keras2(model_config: dict) -> bool:
    """Heuristic: does this ``model_config`` use the Keras 2 dialect?"""
    text = json.dumps(model_config)
    if isinstance(model_config.get("config"), list):
        return True
    if '"batch_input_shape"' in text or '"TFOpLambda"' in text or '"SlicingOpLambda"' in text:
        return True
    for layer in (model_config.get("config") or {}).get("layers", []):
        for node in layer.get("inbound_nodes") or []:
            if isinstance(node, list):
                return True
    return False
