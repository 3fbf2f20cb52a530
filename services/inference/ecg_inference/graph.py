"""An ONNX -> ONNX pass that keeps tf2onnx's Conv1D chains four-dimensional, so onnxruntime's CPU fusions apply.

tf2onnx writes every Keras Conv1D as ``Unsqueeze(axis 2) -> Conv (1 x k kernel, NCHW) -> Squeeze(axis 2)`` and the
batch norm, ReLU and residual Add after it as ops on the 3-D (N, C, T) tensor. onnxruntime then cannot fold the batch
norm into the conv nor fuse the ReLU (both need Conv to feed Mul directly), and its NCHWc layout transformer reorders
the data into and out of its blocked layout around every conv.

This pass computes those 3-D stretches on the 4-D (N, C, 1, T) tensor instead ("lifts" them):

- the output of a ``Squeeze(axis 2)`` of a 4-D tensor is lifted: the 4-D tensor holds its values;
- an elementwise op (Mul, Add, Relu, ...), a Concat or a global pooling whose inputs are lifted tensors or constants
  is rewritten to take the 4-D tensors (constants reshaped to match, a Concat's axis moved);
- an ``Unsqueeze(axis 2)`` of a lifted tensor, or a Transpose/Unsqueeze chain that amounts to one, is replaced by the
  4-D tensor itself;
- a batch norm that no conv precedes (after a residual Add or a Concat: ``Mul`` then ``Add`` of per-channel
  constants) becomes one depthwise 1x1 Conv, so that it too stays in onnxruntime's blocked layout with its ReLU fused;
- a Squeeze back to 3-D remains only where something else (a Transpose, a MatMul, a graph output) reads the 3-D
  tensor; nodes that nothing reads any more are removed.

The arithmetic is the same op for op (the depthwise conv may round its multiply-add once instead of twice). Anything
the pass does not recognise is left as it was; a model without the pattern comes back byte for byte.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

# Ops computed element by element with (multidirectional or unidirectional) broadcasting and no axis attribute: on
# an (N, C, 1, T) input with constants reshaped alike they compute the same numbers as on (N, C, T).
ELEMENTWISE = frozenset(
    {"Add", "Sub", "Mul", "Div", "Max", "Min", "PRelu", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Elu", "Clip"}
)
# Pooling over every spatial axis: over (1, T) as over (T,), the output keeping one more axis of size 1.
GLOBAL_POOLS = frozenset({"GlobalAveragePool", "GlobalMaxPool"})
LIFTED_AXIS = 2  # (N, C, T) -> (N, C, 1, T): where tf2onnx puts the height axis of its 2-D convs
PASS_NOTE = "Conv1D chains kept 4-D by ecg_inference.graph.optimize_for_cpu"  # appended to the graph's doc string
AS_3D = (0, 1, 2)  # a tensor's axes in terms of the lifted 3-D tensor it views: itself
AS_4D = (0, 1, None, 2)  # ... the 4-D tensor (None: the inserted axis of size 1)
Shape = tuple[int | None, ...]


def optimize_for_cpu(onnx_bytes: bytes) -> bytes:
    """The model with its Conv1D chains kept 4-D (see the module docstring); ``onnx_bytes`` if nothing applies."""
    model = onnx.load_from_string(onnx_bytes)
    if not _Lifter(model).run():
        return onnx_bytes
    model.graph.doc_string = "\n".join(filter(None, (model.graph.doc_string, PASS_NOTE)))
    onnx.checker.check_model(model)
    return model.SerializeToString()


class _Lifter:
    """One pass over a model's main graph (in its topological order), rewriting it in place."""

    def __init__(self, model: onnx.ModelProto):
        self.graph = graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        graph_inputs = {value.name for value in graph.input}
        # An initializer that is also a graph input may be overridden at run time: not a constant.
        self.constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer if i.name not in graph_inputs}
        self.shapes = _shapes(model)
        self.producers = {name: node for node in graph.node for name in node.output}
        self.readers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in set(node.input):
                self.readers.setdefault(name, []).append(node)
        self.graph_outputs = {value.name for value in graph.output}
        self.taken = _all_names(graph)
        self.lifted: dict[str, str] = {}  # 3-D tensor -> the 4-D tensor holding the same values as (N, C, 1, T)
        self.views: dict[str, tuple[str, tuple[int | None, ...]]] = {}  # tensor -> (lifted tensor, axes of it)
        self.renamed: dict[str, str] = {}  # an Unsqueeze's output -> the 4-D tensor it equals
        self.absorbed: set[str] = set()  # outputs of the Add nodes folded into a depthwise conv
        self.lifted_constants: dict[str, str] = {}
        self.new_initializers: list[onnx.TensorProto] = []

    def run(self) -> bool:
        """Rewrite the graph; False (graph untouched) when there is nothing to lift."""
        if not self.opset or _has_subgraphs(self.graph):
            return False
        nodes, changed = [], False
        for node in self.graph.node:
            node.input[:] = [self.renamed.get(name, name) for name in node.input]
            if node.output and node.output[0] in self.absorbed:
                continue
            if self._is_lifting_squeeze(node):
                self.lifted[node.output[0]] = node.input[0]
                self.views[node.output[0]] = (node.output[0], AS_3D)
            elif node.op_type in ("Transpose", "Unsqueeze") and _is_standard(node):
                changed |= self._follow_view(node)
            elif self._can_lift(node):
                nodes.extend(self._scale_shift_as_conv(node) or self._lift(node))
                changed = True
                continue
            nodes.append(node)
        if changed:
            self._replace_nodes(_without_dead_nodes(nodes, self.graph_outputs))
        return changed

    # --- recognising the pattern ---------------------------------------------------------------------------------

    def _axes(self, node: onnx.NodeProto) -> list[int] | None:
        """A Squeeze's or Unsqueeze's axes (an attribute before opset 13, a constant input since), or None."""
        if self.opset < 13:
            attribute = next((a for a in node.attribute if a.name == "axes"), None)
            return list(attribute.ints) if attribute is not None else None
        if len(node.input) < 2 or node.input[1] not in self.constants:
            return None
        return [int(axis) for axis in self.constants[node.input[1]].reshape(-1)]

    def _is_lifting_squeeze(self, node: onnx.NodeProto) -> bool:
        """``Squeeze(axis 2)`` of a 4-D tensor: its 3-D output starts a lifted stretch."""
        if node.op_type != "Squeeze" or not _is_standard(node) or len(node.output) != 1:
            return False
        axes = self._axes(node)
        return len(self.shapes.get(node.input[0], ())) == 4 and axes is not None and [a % 4 for a in axes] == [2]

    def _follow_view(self, node: onnx.NodeProto) -> bool:
        """Track a Transpose or Unsqueeze of a lifted tensor; one whose output is the (N, C, 1, T) tensor is replaced
        by the lifted tensor (True)."""
        source = self.views.get(node.input[0])
        if source is None or len(node.output) != 1:
            return False
        lifted_name, axes = source
        if node.op_type == "Transpose":
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            view = tuple(axes[p] for p in perm) if perm else tuple(reversed(axes))
        else:
            inserted = self._axes(node)
            if inserted is None:
                return False
            rank = len(axes) + len(inserted)
            positions = {a % rank for a in inserted}
            remaining = iter(axes)
            view = tuple(None if i in positions else next(remaining) for i in range(rank))
        if view == AS_4D:
            self.renamed[node.output[0]] = self.lifted[lifted_name]
            return True
        self.views[node.output[0]] = (lifted_name, view)
        return False

    def _can_lift(self, node: onnx.NodeProto) -> bool:
        if not _is_standard(node) or len(node.output) != 1:
            return False
        inputs = [name for name in node.input if name]
        if not any(name in self.lifted for name in inputs):
            return False
        if node.op_type in ELEMENTWISE:  # every input lifted or a constant that broadcasts against (N, C, T)
            return all(
                name in self.lifted or (name in self.constants and self.constants[name].ndim <= 3) for name in inputs
            )
        if node.op_type == "Concat" or node.op_type in GLOBAL_POOLS:
            return all(name in self.lifted for name in inputs)
        return False

    def _per_channel_constant(self, node: onnx.NodeProto, data: str, channels: int) -> np.ndarray | None:
        """The constant that a two-input ``node`` applies to ``data``, as one value per channel; None if it is not."""
        if len(node.input) != 2 or data not in node.input:
            return None
        value = self.constants.get(node.input[1] if node.input[0] == data else node.input[0])
        if value is None or value.ndim > 3 or not np.issubdtype(value.dtype, np.floating):
            return None
        return value.reshape(channels) if (1,) * (3 - value.ndim) + value.shape == (1, channels, 1) else None

    # --- rewriting -----------------------------------------------------------------------------------------------

    def _lift(self, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        """The node on 4-D inputs, and a Squeeze that gives its original output (removed later if nothing reads it)."""
        lifted = onnx.NodeProto()
        lifted.CopyFrom(node)
        lifted.name = self._new_name(f"{node.name or node.op_type}_4d")
        lifted.input[:] = [self._lifted_input(name) for name in node.input]
        if node.op_type == "Concat":
            axis = next(a for a in lifted.attribute if a.name == "axis")
            axis_3d = axis.i % 3
            axis.i = axis_3d if axis_3d < LIFTED_AXIS else axis_3d + 1
        return self._lifted_output(lifted, node.output[0])

    def _scale_shift_as_conv(self, mul: onnx.NodeProto) -> list[onnx.NodeProto]:
        """``Mul`` by a per-channel constant, then ``Add`` of one, as a depthwise 1x1 Conv on the 4-D tensor, where
        no Conv feeds the Mul (onnxruntime folds those into the conv before); [] where this does not apply."""
        data = next((name for name in mul.input if name in self.lifted), None)
        if mul.op_type != "Mul" or data is None or mul.output[0] in self.graph_outputs:
            return []
        feeding = self.producers.get(self.lifted[data])
        channels = self.shapes.get(data, (None, None))[1]
        readers = self.readers.get(mul.output[0], [])
        if (feeding is not None and feeding.op_type == "Conv") or not channels or len(readers) != 1:
            return []
        add = readers[0]
        scale = self._per_channel_constant(mul, data, channels)
        shift = self._per_channel_constant(add, mul.output[0], channels) if add.op_type == "Add" else None
        if scale is None or shift is None or not _is_standard(add) or len(add.output) != 1:
            return []
        weights = self._new_initializer(f"{mul.name or 'Mul'}_depthwise_weights", scale.reshape(channels, 1, 1, 1))
        bias = self._new_initializer(f"{add.name or 'Add'}_depthwise_bias", shift.astype(scale.dtype))
        conv = helper.make_node(
            "Conv",
            [self.lifted[data], weights, bias],
            [],
            name=self._new_name(f"{mul.name or 'Mul'}_depthwise"),
            group=channels,
            kernel_shape=[1, 1],
        )
        self.absorbed.add(add.output[0])
        return self._lifted_output(conv, add.output[0])

    def _lifted_output(self, node_4d: onnx.NodeProto, output: str) -> list[onnx.NodeProto]:
        node_4d.output[:] = [self._new_name(f"{output}_4d")]
        self.lifted[output] = node_4d.output[0]
        self.views[output] = (output, AS_3D)
        return [node_4d, self._squeeze(node_4d.output[0], output)]

    def _lifted_input(self, name: str) -> str:
        if not name or name in self.lifted:
            return self.lifted.get(name, name)
        value = self.constants[name]
        if value.ndim <= 1:  # a scalar, or a vector over T: broadcasts the same way against both ranks
            return name
        if name not in self.lifted_constants:
            shape = (1,) * (3 - value.ndim) + value.shape
            lifted_shape = (*shape[:LIFTED_AXIS], 1, *shape[LIFTED_AXIS:])
            self.lifted_constants[name] = self._new_initializer(f"{name}_4d", value.reshape(lifted_shape))
        return self.lifted_constants[name]

    def _squeeze(self, source: str, output: str) -> onnx.NodeProto:
        name = self._new_name(f"{output}_3d")
        if self.opset < 13:
            return helper.make_node("Squeeze", [source], [output], name=name, axes=[LIFTED_AXIS])
        if "" not in self.lifted_constants:  # "": the axes input, shared by every Squeeze the pass adds
            self.lifted_constants[""] = self._new_initializer("lifted_axis", np.array([LIFTED_AXIS], np.int64))
        return helper.make_node("Squeeze", [source, self.lifted_constants[""]], [output], name=name)

    def _new_initializer(self, wanted: str, value: np.ndarray) -> str:
        name = self._new_name(wanted)
        self.new_initializers.append(numpy_helper.from_array(value, name))
        return name

    def _new_name(self, wanted: str) -> str:
        name, i = wanted, 1
        while name in self.taken:
            name, i = f"{wanted}_{i}", i + 1
        self.taken.add(name)
        return name

    def _replace_nodes(self, nodes: list[onnx.NodeProto]) -> None:
        """Install ``nodes``, the new constants, and drop the initializers and value infos of removed tensors."""
        graph = self.graph
        read = {name for node in nodes for name in node.input} | self.graph_outputs
        graph_inputs = {value.name for value in graph.input}
        initializers = [i for i in (*graph.initializer, *self.new_initializers) if i.name in read | graph_inputs]
        present = read | {name for node in nodes for name in node.output}
        value_info = [value for value in graph.value_info if value.name in present]
        for field, items in ((graph.node, nodes), (graph.initializer, initializers), (graph.value_info, value_info)):
            del field[:]
            field.extend(items)


def _is_standard(node: onnx.NodeProto) -> bool:
    return node.domain in ("", "ai.onnx")


def _shapes(model: onnx.ModelProto) -> dict[str, Shape]:
    """Tensor name -> shape (None where a dimension is not a known number), where shape inference knows the rank."""
    graph = onnx.shape_inference.infer_shapes(model).graph
    return {
        value.name: tuple(d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim)
        for value in (*graph.input, *graph.value_info, *graph.output)
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape")
    }


def _all_names(graph: onnx.GraphProto) -> set[str]:
    names = {value.name for value in (*graph.input, *graph.output, *graph.value_info, *graph.initializer)}
    for node in graph.node:
        names.update(node.input, node.output, [node.name])
    return names


def _has_subgraphs(graph: onnx.GraphProto) -> bool:
    """If, Loop and Scan bodies may read outer tensors by name: renaming those is not worth the risk here."""
    kinds = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    return any(attribute.type in kinds for node in graph.node for attribute in node.attribute)


def _without_dead_nodes(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """``nodes`` (in topological order) less those whose outputs nothing reads."""
    needed, kept = set(outputs), []
    for node in reversed(nodes):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(node.input)
    return kept[::-1]
