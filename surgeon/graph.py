"""Graph queries over one level of a functional config: producers, consumers, order.

A *node* is one call of a layer, ``(layer_name, node_index)``; a *tensor* is
``(layer_name, node_index, tensor_index)``. Nested models are single layers at this level.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

from surgeon.errors import SurgeonError
from surgeon.spec import io_refs, iter_tensor_refs, keras_tensors, layer_name

Node = tuple[str, int]
Tensor = tuple[str, int, int]


@dataclasses.dataclass
class Graph:
    """The call graph of one functional config (one nesting level)."""

    layers: dict[str, dict]
    node_inputs: dict[Node, list[Tensor]]
    inputs: list[Tensor]
    outputs: list[Tensor]

    @classmethod
    def of(cls, model_config: dict) -> "Graph":
        config = model_config["config"]
        layers: dict[str, dict] = {}
        node_inputs: dict[Node, list[Tensor]] = {}
        for layer in config["layers"]:
            name = layer_name(layer)
            if name in layers:
                raise SurgeonError(f"layer name '{name}' is used twice in the model config; the file is corrupt")
            layers[name] = layer
            for index, node in enumerate(layer.get("inbound_nodes") or []):
                node_inputs[(name, index)] = list(iter_tensor_refs(node))
        graph = cls(layers, node_inputs, io_refs(config["input_layers"]), io_refs(config["output_layers"]))
        graph._check()
        return graph

    def _check(self) -> None:
        for (name, _), tensors in self.node_inputs.items():
            for source, _, _ in tensors:
                if source not in self.layers:
                    raise SurgeonError(
                        f"layer '{name}' takes its input from '{source}', which is not in the model; the file is corrupt"
                    )
        for source, _, _ in self.inputs + self.outputs:
            if source not in self.layers:
                raise SurgeonError(f"the model's inputs/outputs name a missing layer '{source}'; the file is corrupt")
        self.nodes_in_order()  # raises on a cycle

    def producer(self, tensor: Tensor) -> Node:
        return tensor[0], tensor[1]

    def consumers(self) -> dict[Tensor, list[Node]]:
        """Tensor -> the nodes that take it as an input (a node may appear twice)."""
        result: dict[Tensor, list[Node]] = collections.defaultdict(list)
        for node, tensors in self.node_inputs.items():
            for tensor in tensors:
                result[tensor].append(node)
        return result

    def call_count(self, name: str) -> int:
        return len(self.layers[name].get("inbound_nodes") or [])

    def nodes_in_order(self) -> list[Node]:
        """Every node reachable from the outputs, each after the nodes it depends on."""
        order: list[Node] = []
        done: set[Node] = set()
        in_progress: set[Node] = set()
        input_layers = {t[0] for t in self.inputs}

        def visit(node: Node) -> None:
            # Iterative DFS: ResNet-sized graphs would exceed Python's recursion limit.
            stack = [(node, iter(self._parents(node)))]
            in_progress.add(node)
            while stack:
                current, parents = stack[-1]
                advanced = False
                for parent in parents:
                    if parent in done:
                        continue
                    if parent in in_progress:
                        raise SurgeonError(
                            f"the model graph has a cycle through layer '{parent[0]}'; the file is corrupt"
                        )
                    in_progress.add(parent)
                    stack.append((parent, iter(self._parents(parent))))
                    advanced = True
                    break
                if not advanced:
                    stack.pop()
                    in_progress.discard(current)
                    done.add(current)
                    order.append(current)

        for tensor in self.outputs:
            node = self.producer(tensor)
            if node not in done:
                visit(node)
        for name in input_layers:
            if (name, 0) not in done:
                done.add((name, 0))
                order.insert(0, (name, 0))
        return order

    def _parents(self, node: Node) -> list[Node]:
        if node not in self.node_inputs and node[0] in self.layers:
            if self.layers[node[0]].get("class_name") == "InputLayer":
                return []
            raise SurgeonError(f"a tensor refers to call {node[1]} of layer '{node[0]}', which does not exist")
        return [self.producer(t) for t in self.node_inputs.get(node, [])]

    def keras_layer_order(self) -> list[str]:
        """The order of ``model.layers`` that Keras 3 computes for this graph.

        The legacy ``.h5`` loader matches weights to layers by position in this order, so a
        writer must reproduce it exactly. A port of ``keras/src/ops/function.py:map_graph``:
        DFS from the outputs records first-visit indices, nodes get depths (longest path to an
        output), layers are sorted by decreasing depth, then by first-visit index.
        """
        finished: set[Node] = set()
        in_progress: set[Node] = set()
        nodes_in_decreasing_depth: list[Node] = []
        layer_indices: dict[str, int] = {}
        input_tensors = set(self.inputs)

        def helper(tensor: Tensor) -> None:
            stack: list[tuple[Node, list[Tensor], int]] = []

            def enter(t: Tensor) -> bool:
                node = self.producer(t)
                if node in finished:
                    return False
                is_input = self.layers[node[0]].get("class_name") == "InputLayer"
                if not is_input and t in input_tensors:
                    finished.add(node)
                    return False
                if node in in_progress:
                    raise SurgeonError(f"the model graph has a cycle through layer '{node[0]}'")
                layer_indices.setdefault(node[0], len(layer_indices))
                in_progress.add(node)
                parents = [] if is_input else self.node_inputs.get(node, [])
                stack.append((node, parents, 0))
                return True

            enter(tensor)
            while stack:
                node, parents, position = stack[-1]
                if position < len(parents):
                    stack[-1] = (node, parents, position + 1)
                    enter(parents[position])
                    continue
                stack.pop()
                finished.add(node)
                in_progress.discard(node)
                nodes_in_decreasing_depth.append(node)

        for tensor in self.outputs:
            helper(tensor)

        node_depth: dict[Node, int] = {}
        layer_depth: dict[str, int] = {}
        in_graph = set(nodes_in_decreasing_depth)
        for node in reversed(nodes_in_decreasing_depth):
            depth = node_depth.setdefault(node, 0)
            depth = max(depth, layer_depth.get(node[0], 0))
            layer_depth[node[0]] = depth
            node_depth[node] = depth
            if self.layers[node[0]].get("class_name") == "InputLayer":
                continue
            for parent_tensor in self.node_inputs.get(node, []):
                parent = self.producer(parent_tensor)
                if parent in in_graph:
                    node_depth[parent] = max(depth + 1, node_depth.get(parent, 0))
        for name, _, _ in self.inputs:
            if name not in layer_depth:
                layer_depth[name] = 0
                layer_indices[name] = -1

        by_depth: dict[int, list[str]] = collections.defaultdict(list)
        for name, depth in layer_depth.items():
            by_depth[depth].append(name)
        order: list[str] = []
        for depth in sorted(by_depth, reverse=True):
            order.extend(sorted(by_depth[depth], key=lambda n: layer_indices[n]))
        return order


def recorded_tensors(model_config: dict) -> dict[Tensor, tuple[Any, str]]:
    """Tensor -> (shape, dtype) as Keras recorded them on one level of a functional config.

    Keras writes a tensor's shape on every consumer's input (and an InputLayer's on the layer);
    the first known shape wins. Shape is None where no consumer recorded one.
    """
    found: dict[Tensor, tuple[Any, str]] = {}

    def record(tensor: Tensor, shape, dtype) -> None:
        if tensor not in found or (found[tensor][0] is None and shape is not None):
            found[tensor] = (shape, dtype or "float32")

    for layer in model_config["config"]["layers"]:
        if layer.get("class_name") == "InputLayer":
            config = layer["config"]
            record((layer_name(layer), 0, 0), config.get("batch_shape") or config.get("batch_input_shape"), config.get("dtype"))
        for tensor in keras_tensors(layer.get("inbound_nodes") or []):
            name, node, index = tensor["config"]["keras_history"]
            record((name, int(node), int(index)), tensor["config"].get("shape"), tensor["config"].get("dtype"))
    return found
