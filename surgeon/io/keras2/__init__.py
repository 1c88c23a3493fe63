"""Translate Keras 2 model configs (tf.keras 2.x, standalone keras 2.x) into Keras 3 ones.

Pure Python: no TensorFlow or Keras import, so the reader's fast path stays fast. Everything here
works on the JSON dicts stored in a legacy ``.h5`` file (the ``model_config`` and
``training_config`` attributes).

Public API
----------
- :func:`is_keras2` -- does a file's ``keras_version`` attribute say Keras 2?
- :func:`looks_like_keras2` -- sniff a ``model_config`` dict when the version is missing.
- :func:`translate_model_config` -> :class:`Translation` (``.config``, ``.renamed``, ``.notes``).
- The ``training_config`` (optimizer, loss and metric names) is translated by
  ``surgeon.io.compile_config.translate_training_config``, next to the names it shares with Keras 3.

Modules, one subject each (each imports only the ones above it)
---------------------------------------------------------------
- ``version``: is this config or file Keras 2?
- ``context``: the :class:`Translation` result, the notes a translation collects, tensor references.
- ``nodes``: Keras 2 inbound nodes -> calls of a layer.
- ``shapes``: best-effort output shapes (placeholders for Keras; slicing rules need them).
- ``layer_configs``: per-layer config-key rules (``CONFIG_RULES``, ``CLASS_RENAMES``).
- ``tf_ops``: TFOpLambda / SlicingOpLambda calls rewritten as built-in layers (``TFOP_RULES``).
- ``models``: functional, Sequential and nested models; :func:`translate_model_config`.

The output config is what Keras 3.15 itself writes into an ``.h5`` ``model_config``: layers with
``class_name``, ``config``, ``name`` and ``inbound_nodes`` in the new format
``[{"args": [{"class_name": "__keras_tensor__", "config": {"shape", "dtype", "keras_history"}}],
"kwargs": {}}]``, loadable with ``keras.Model.from_config`` / ``keras.models.model_from_json``.
The ``shape`` in a ``__keras_tensor__`` is a placeholder that Keras replaces by the real tensor when
it rebuilds the graph; this module infers it for the common layers and otherwise writes a shape of
the right rank (or ``[None]``) with unknown dimensions.

How Keras 2 ``.h5`` weights map to Keras 3 layers
------------------------------------------------
A Keras 2 ``.h5`` keeps weights under ``model_weights``: the group's ``layer_names`` attribute lists
the top-level layers in model order; ``model_weights[<layer name>]`` has a ``weight_names``
attribute listing that layer's weights, and each array is the dataset
``model_weights[<layer name>][<weight name>]``. Weight names are ``<layer path>/<variable>:0``
(``dense_1/kernel:0``).

- A plain layer: its weights are stored in ``layer.weights`` order (trainable ones first), which for
  the built-in layers is Keras 3's order too (Dense/Conv: kernel, bias; BatchNormalization: gamma,
  beta, moving_mean, moving_variance; DepthwiseConv: depthwise_kernel, bias; SeparableConv:
  depthwise_kernel, pointwise_kernel, bias). ``layer.set_weights(arrays)`` in that order.
- A nested model is one top-level entry whose weight names carry the *inner* layer's name
  (``conv/kernel:0``, not ``base/conv/kernel:0``); ``h5_reader`` gives each weight to the inner
  layer that the innermost run of its path components names.
- ``/`` in a layer name: h5py treats ``/`` as a path separator, so the group of layer
  ``block1/conv`` is ``model_weights/block1/conv`` (nested groups) and its datasets are
  ``model_weights/block1/conv/block1/conv/kernel:0``. Keras 3 refuses ``/`` in names, so such layers
  are renamed (``Translation.renamed``, old -> new, ``/`` becomes ``_``): read weights with the
  *old* name (``f["model_weights"][old]``, ``weight_names`` as stored) and give them to the layer
  with the new name.
- Layers that a translation rule replaces (TFOpLambda, SlicingOpLambda) have no weights.
"""

from surgeon.io.keras2.context import Translation
from surgeon.io.keras2.models import translate_model_config
from surgeon.io.keras2.version import is_keras2, looks_like_keras2

__all__ = ["Translation", "is_keras2", "looks_like_keras2", "translate_model_config"]
