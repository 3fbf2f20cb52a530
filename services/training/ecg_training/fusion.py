"""Beat features fused with the network, in one ONNX graph.

A gradient-boosted model (scikit-learn's GradientBoostingClassifier, which skl2onnx converts exactly) learns the
classes from the recording's beat features (:func:`ecg_shared.beats.recording_features`) on the training split. Its
probabilities are blended with the network's: ``p = w * network + (1 - w) * features``, with ``w`` chosen on the
validation split for the job's primary metric. The boosted model goes to ONNX with skl2onnx and is joined to the
network's graph, so the exported model has two inputs (``ecg``, ``features``), one output (``probabilities``), and
runs in the same onnxruntime call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.ensemble import GradientBoostingClassifier

from ecg_shared.model_metadata import FEATURES_INPUT_NAME, FEATURES_PART_NAME, INPUT_NAME, OUTPUT_NAME

BLEND_WEIGHTS = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 11))
NETWORK_OUTPUT = "network_probabilities"
FEATURE_MODEL_PREFIX = "beat_model/"
ML_OPSET = 3


@dataclass
class FeatureModel:
    """The boosted model and where each of its outputs goes among the job's classes."""

    model: GradientBoostingClassifier
    n_classes: int

    @property
    def columns(self) -> np.ndarray:
        """(its classes, the job's classes) 0/1 matrix: the job's classes absent from training get 0."""
        placement = np.zeros((len(self.model.classes_), self.n_classes), dtype=np.float32)
        placement[np.arange(len(self.model.classes_)), self.model.classes_.astype(int)] = 1.0
        return placement

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(np.asarray(features, dtype=np.float32)) @ self.columns


def fit_feature_model(features: np.ndarray, y: np.ndarray, n_classes: int, seed: int) -> FeatureModel:
    """Boosted trees (depth 3, row subsampling) on the training split's features; early stopping on a seeded 15% of
    it."""
    model = GradientBoostingClassifier(
        n_estimators=400,
        learning_rate=0.05,
        max_depth=3,
        subsample=0.8,
        n_iter_no_change=20,
        validation_fraction=0.15,
        random_state=seed,
    )
    model.fit(np.asarray(features, dtype=np.float32), y)
    return FeatureModel(model, n_classes)


def feature_reference(features: np.ndarray, y: np.ndarray, normal_columns: list[int]) -> list[float]:
    """Each feature's median over the normal recordings of ``features`` (the training split's): what the explanation
    sets a measurement to, to ask how much it moved the answer. All recordings where none is normal."""
    features = np.asarray(features, dtype=np.float64)
    normal = np.isin(y, normal_columns)
    rows = features[normal] if normal.any() else features
    return [round(float(v), 6) for v in np.median(rows, axis=0)]


def choose_blend_weight(
    network: np.ndarray, features: np.ndarray, score: Callable[[np.ndarray], float]
) -> tuple[float, dict[float, float]]:
    """The network's weight in the blend that scores best on validation (ties: the larger weight), and every
    weight's score."""
    scores = {w: float(score(w * network + (1 - w) * features)) for w in BLEND_WEIGHTS}
    best = max(scores, key=lambda w: (round(scores[w], 6), w))
    return best, scores


def fused_onnx(network_onnx: bytes, feature_model: FeatureModel, weight: float, n_features: int) -> onnx.ModelProto:
    """One graph: ``probabilities = weight * network(ecg) + (1 - weight) * boosted(features)``.

    A part whose weight is 0 is left out (its input stays declared, unused), so a model whose answer is its
    features' alone does not run its network for nothing: the same probabilities, to the bit.
    """
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    network = onnx.load_from_string(network_onnx)
    trees = to_onnx(
        feature_model.model,
        initial_types=[(FEATURES_INPUT_NAME, FloatTensorType([None, n_features]))],
        options={id(feature_model.model): {"zipmap": False}},
        target_opset={"": _opset(network, ""), "ai.onnx.ml": ML_OPSET},
    )
    trees = onnx.compose.add_prefix(trees, FEATURE_MODEL_PREFIX, rename_inputs=False)
    tree_probabilities = next(o.name for o in trees.graph.output if "probabilities" in o.name)

    for node in network.graph.node:
        node.output[:] = [NETWORK_OUTPUT if name == OUTPUT_NAME else name for name in node.output]
    nodes, initializers, parts = [], [], []
    if weight > 0:
        nodes += [
            *network.graph.node,
            helper.make_node("Mul", [NETWORK_OUTPUT, "blend/network_weight"], ["blend/network_part"]),
        ]
        initializers += [*network.graph.initializer, _scalar(weight, "blend/network_weight")]
        parts.append("blend/network_part")
    if weight < 1:
        nodes += [
            *trees.graph.node,
            helper.make_node("MatMul", [tree_probabilities, "blend/class_columns"], ["blend/features_all"]),
            helper.make_node("Mul", ["blend/features_all", "blend/features_weight"], [FEATURES_PART_NAME]),
        ]
        initializers += [
            *trees.graph.initializer,
            _scalar(1.0 - weight, "blend/features_weight"),
            numpy_helper.from_array(feature_model.columns, "blend/class_columns"),
        ]
        parts.append(FEATURES_PART_NAME)
    nodes.append(helper.make_node("Add" if len(parts) == 2 else "Identity", parts, [OUTPUT_NAME]))
    network_input = next(i for i in network.graph.input if i.name == INPUT_NAME)
    trees_input = next(i for i in trees.graph.input if i.name == FEATURES_INPUT_NAME)
    output = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [None, feature_model.n_classes])
    graph = helper.make_graph(
        nodes, network.graph.name, [network_input, trees_input], [output], initializer=initializers
    )
    opsets: dict[str, int] = {}
    for opset in list(network.opset_import) + list(trees.opset_import):
        opsets[opset.domain] = max(opset.version, opsets.get(opset.domain, 0))
    fused = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    fused.ir_version = max(network.ir_version, trees.ir_version)
    fused.producer_name = network.producer_name
    return fused


def _scalar(value: float, name: str) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(value, dtype=np.float32), name)


def _opset(model: onnx.ModelProto, domain: str) -> int:
    return next(o.version for o in model.opset_import if o.domain == domain)
