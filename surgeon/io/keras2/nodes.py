"""Keras 2 inbound nodes (nested lists) -> calls of a layer with :class:`TensorRef` arguments."""

from __future__ import annotations

from surgeon.io.keras2.context import Constant, TensorRef
from surgeon.spec import map_tensor_refs


def is_node_entry(x) -> bool:
    return (
        isinstance(x, list)
        and len(x) in (3, 4)
        and isinstance(x[0], str)
        and isinstance(x[1], int)
        and not isinstance(x[1], bool)
        and (len(x) == 3 or isinstance(x[3], dict))
    )


class Call:
    """One call of a layer: ``layer(*args, **kwargs)`` with tensors as :class:`TensorRef`."""

    def __init__(self, args: list, kwargs: dict):
        self.args, self.kwargs = args, kwargs


def parse_node(node, layer_names: set, preserve_structure: bool) -> Call:
    """Parse one Keras 2 (or Keras 3) inbound node into a :class:`Call`."""
    if isinstance(node, dict):  # already Keras 3
        return Call(
            from_keras3_structure(node.get("args", [])), from_keras3_structure(node.get("kwargs", {}))
        )
    kwargs_holder: list[dict] = []

    def entry(e):
        if len(e) == 4 and not kwargs_holder:
            kwargs_holder.append(e[3])
        if e[0] == "_CONSTANT_VALUE":
            return Constant(e[2])
        return TensorRef(e[0], e[1], e[2])

    def walk(x):
        if is_node_entry(x):
            return entry(x)
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x

    struct = walk(node)
    if not preserve_structure and isinstance(struct, list) and len(struct) == 1:
        struct = struct[0]  # plain layer called on one tensor
    kwargs = kwargs_holder[0] if kwargs_holder else {}

    def kw(v):
        if (
            isinstance(v, list) and len(v) == 3 and isinstance(v[0], str)
            and v[0] in layer_names and isinstance(v[1], int) and isinstance(v[2], int)
        ):
            return TensorRef(*v)
        if isinstance(v, list):
            return [kw(a) for a in v]
        if isinstance(v, dict):
            return {k: kw(a) for k, a in v.items()}
        return v

    return Call([struct], {k: kw(v) for k, v in kwargs.items()})


def from_keras3_structure(x):
    """A Keras 3 node's args or kwargs with each keras tensor as a :class:`TensorRef`."""
    return map_tensor_refs(x, lambda tensor: TensorRef(*tensor["config"]["keras_history"]))
