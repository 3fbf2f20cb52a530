"""Loaded models: onnxruntime sessions with the metadata their ONNX files carry, from the registry or from disk.

A :class:`ModelSet` is immutable; hot reload builds a new one and swaps the reference, so a request that started on
the old set finishes on the old sessions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ecg_inference.cpus import usable_cpus, worker_processes
from ecg_inference.graph import optimize_for_cpu
from ecg_shared.artifacts import ArtifactStore, sha256
from ecg_shared.model_metadata import (
    FEATURES_INPUT_NAME,
    FEATURES_PART_NAME,
    INPUT_NAME,
    OUTPUT_NAME,
    ModelMetadata,
)
from ecg_shared.settings import get_settings

log = logging.getLogger(__name__)


GPU_BATCH_WINDOWS = 256
CPU_BATCH_WINDOWS = 8  # measured: 0.40 vs 0.73 ms a window (12-lead) and 1.35 vs 2.0 (rhythm) against batch 1
GRAPH_PASS_TOLERANCE = 1e-5  # most |probability| the CPU graph pass may change, checked once per model load


class ModelLoadError(RuntimeError):
    pass


def execution_providers() -> list[str]:
    """The providers named in settings that this onnxruntime build offers, in the settings' order (CPU at least)."""
    available = set(ort.get_available_providers())
    wanted = [p.strip() for p in get_settings().onnx_providers.split(",") if p.strip()]
    chosen = [p for p in wanted if p in available]
    return chosen or ["CPUExecutionProvider"]


def onnx_threads() -> int:
    """Intra-op threads per session: the setting, else the usable CPUs shared out among the worker processes, so
    the processes' onnxruntime calls together use each core once."""
    return get_settings().onnx_threads or max(1, usable_cpus() // worker_processes())


def create_session(onnx_bytes: bytes) -> ort.InferenceSession:
    """A session on ``onnx_bytes``; on CPU, on the graph that ``graph.optimize_for_cpu`` makes of it, once that is
    checked to give the same probabilities (see docs/inference.md)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = onnx_threads()
    options.inter_op_num_threads = 1
    # Spinning threads would steal the cores that preparing requests needs between calls.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = execution_providers()
    session = ort.InferenceSession(onnx_bytes, sess_options=options, providers=providers)
    if providers == ["CPUExecutionProvider"]:  # the pass is for onnxruntime's CPU kernels
        session = _on_cpu_optimized_graph(session, onnx_bytes, options)
    return session


def _on_cpu_optimized_graph(
    exported: ort.InferenceSession, onnx_bytes: bytes, options: ort.SessionOptions
) -> ort.InferenceSession:
    """A session on ``optimize_for_cpu(onnx_bytes)`` if it computes what ``exported`` does (within
    GRAPH_PASS_TOLERANCE on a fixed input); else ``exported``, with a warning."""
    try:
        optimized_bytes = optimize_for_cpu(onnx_bytes)
        if optimized_bytes == onnx_bytes:
            return exported
        optimized = ort.InferenceSession(optimized_bytes, sess_options=options, providers=exported.get_providers())
        difference = max_output_difference(exported, optimized)
    except Exception as exc:  # the pass is an optimisation: never a reason not to serve the model
        log.warning("serving the graph as exported: the CPU graph pass failed (%s: %s)", type(exc).__name__, exc)
        return exported
    if not difference <= GRAPH_PASS_TOLERANCE:
        log.warning("serving the graph as exported: the CPU graph pass changed its outputs by up to %.2g", difference)
        return exported
    return optimized


def max_output_difference(a: ort.InferenceSession, b: ort.InferenceSession) -> float:
    """Max |a - b| over the outputs of two sessions of one model on a fixed random float input (batch 1)."""
    rng = np.random.default_rng(0)
    feeds = {}
    for value in a.get_inputs():
        shape = [1 if i == 0 and not isinstance(d, int) else d for i, d in enumerate(value.shape)]
        if value.type != "tensor(float)" or not all(isinstance(d, int) for d in shape):
            raise ValueError(f"no check input for input {value.name!r} ({value.type} {value.shape})")
        feeds[value.name] = rng.standard_normal(shape).astype(np.float32)
    differences = [
        float(np.max(np.abs(x - y))) if x.shape == y.shape else float("inf")
        for x, y in zip(a.run(None, feeds), b.run(None, feeds), strict=True)
    ]
    return max(differences)


@dataclass
class ModelInputs:
    """Rows for one model: windows (``ecg``) and, for a model fused with beat features, each row's recording's
    feature vector (``features``); rows of many requests are joined into one onnxruntime call."""

    ecg: np.ndarray  # (rows, window, leads)
    features: np.ndarray | None = None  # (rows, n_features)

    def __len__(self) -> int:
        return len(self.ecg)

    def __getitem__(self, rows: slice) -> ModelInputs:
        return ModelInputs(self.ecg[rows], None if self.features is None else self.features[rows])

    def rows(self, start: int, stop: int) -> ModelInputs:
        return self[start:stop]

    @staticmethod
    def join(parts: list[ModelInputs]) -> ModelInputs:
        if len(parts) == 1:
            return parts[0]
        features = None if parts[0].features is None else np.concatenate([p.features for p in parts])
        return ModelInputs(np.concatenate([p.ecg for p in parts]), features)

    def feeds(self) -> dict[str, np.ndarray]:
        feeds = {INPUT_NAME: np.ascontiguousarray(self.ecg, np.float32)}
        if self.features is not None:
            feeds[FEATURES_INPUT_NAME] = np.ascontiguousarray(self.features, np.float32)
        return feeds


@dataclass(eq=False)
class LoadedModel:
    """One servable model: identity-hashed, so the batcher never mixes two versions of one name."""

    metadata: ModelMetadata
    session: ort.InferenceSession
    version: int | None
    sha256: str
    # A model fused with beat features whose file carries their reference: its graph's features part alone
    # (FEATURES_PART_NAME from ``features``), for the explanation by measurement. None otherwise.
    features_part: ort.InferenceSession | None = None

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    @property
    def leads(self) -> tuple[str, ...]:
        return self.metadata.preprocessing.leads

    @property
    def batch_limit(self) -> int:
        """Most windows per onnxruntime call: the setting, else 256 on CUDA and 8 on CPU (see docs/inference.md)."""
        configured = get_settings().batch_max_size
        if configured > 0:
            return configured
        return GPU_BATCH_WINDOWS if "CUDAExecutionProvider" in self.providers else CPU_BATCH_WINDOWS

    @property
    def min_duration_s(self) -> float:
        return min(get_settings().classify_min_duration_s, self.metadata.preprocessing.window_s)

    def predict(self, inputs: ModelInputs | np.ndarray) -> np.ndarray:
        """Class probabilities (n, n_classes), before calibration, for n rows of model inputs (windows alone for a
        network without features), in one onnxruntime call."""
        if not isinstance(inputs, ModelInputs):
            inputs = ModelInputs(inputs)
        (probabilities,) = self.session.run([OUTPUT_NAME], inputs.feeds())
        return probabilities

    def predict_features_part(self, features: np.ndarray) -> np.ndarray:
        """The features' share of :meth:`predict`'s probabilities, (n, n_classes), for n feature vectors: what
        changes when only the features change (the blend is linear)."""
        (part,) = self.features_part.run([FEATURES_PART_NAME], {FEATURES_INPUT_NAME: np.asarray(features, np.float32)})
        return part


def load_model(onnx_bytes: bytes, version: int | None = None, expected_name: str | None = None) -> LoadedModel:
    session = create_session(onnx_bytes)
    try:
        metadata = ModelMetadata.from_onnx_props(session.get_modelmeta().custom_metadata_map)
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"model file lacks valid ECG metadata: {exc}") from None
    if expected_name and metadata.name != expected_name:
        raise ModelLoadError(f"model file says it is {metadata.name!r}, expected {expected_name!r}")
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    wanted = [INPUT_NAME] + ([FEATURES_INPUT_NAME] if metadata.features is not None else [])
    if sorted(inputs) != sorted(wanted) or OUTPUT_NAME not in outputs:
        raise ModelLoadError(
            f"model {metadata.name!r} must have inputs {wanted} and output {OUTPUT_NAME!r}, has {inputs} -> {outputs}"
        )
    version = version if version is not None else metadata.version
    metadata.version = version
    return LoadedModel(metadata, session, version, sha256(onnx_bytes), features_part_session(onnx_bytes, metadata))


def features_part_session(onnx_bytes: bytes, metadata: ModelMetadata) -> ort.InferenceSession | None:
    """A CPU session on the graph's features part alone (``features`` -> FEATURES_PART_NAME, onnx's extractor), for
    a model fused with beat features whose metadata carries their reference; None for any other (a network alone, a
    blend weight of 1, a file without the reference: nothing to explain by measurement)."""
    if metadata.features is None or metadata.feature_reference is None:
        return None
    import onnx
    from onnx.utils import Extractor

    model = onnx.load_from_string(onnx_bytes)
    if not any(FEATURES_PART_NAME in node.output for node in model.graph.node):
        return None
    # its type, which the extractor needs and shape inference does not give past the trees (ai.onnx.ml)
    part_type = onnx.helper.make_tensor_value_info(
        FEATURES_PART_NAME, onnx.TensorProto.FLOAT, [None, len(metadata.classes)]
    )
    model.graph.value_info.append(part_type)
    part = Extractor(model).extract_model([FEATURES_INPUT_NAME], [FEATURES_PART_NAME])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # a few hundred rows of trees: less than a millisecond
    options.inter_op_num_threads = 1
    return ort.InferenceSession(part.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class ModelSet:
    models: dict[str, LoadedModel] = field(default_factory=dict)
    revision: str = ""
    source: str = ""
    errors: dict[str, str] = field(default_factory=dict)  # active versions that could not be loaded, by name

    def __bool__(self) -> bool:
        return bool(self.models)

    def describe(self) -> list[dict]:
        return [
            {
                "name": m.name,
                "version": m.version,
                "family": m.metadata.family,
                "leads": list(m.leads),
                "classes": m.metadata.classes,
                "providers": m.providers,
            }
            for m in self.models.values()
        ]


def load_bundled(models_dir: Path | None = None, names: list[str] | None = None) -> ModelSet:
    """Every ``*.onnx`` in the models folder (settings.models_dir), or just ``names``."""
    models_dir = Path(models_dir or get_settings().models_dir)
    paths = sorted(models_dir.glob("*.onnx"))
    if names:
        wanted = set(names)
        missing = wanted - {p.stem for p in paths}
        if missing:
            raise ModelLoadError(
                f"no bundled model {', '.join(sorted(missing))} in {models_dir} "
                f"(has {', '.join(p.stem for p in paths) or 'none'})"
            )
        paths = [p for p in paths if p.stem in wanted]
    models = {}
    for path in paths:
        model = load_model(path.read_bytes(), expected_name=path.stem)
        models[model.name] = model
    revision = ";".join(f"{m.name}:{m.sha256[:12]}" for m in models.values())
    return ModelSet(models, revision, source=str(models_dir))


def load_registry(previous: ModelSet | None = None, store: ArtifactStore | None = None) -> ModelSet:
    """The active version of every registered model; versions already loaded in ``previous`` are reused."""
    from ecg_shared.db import session_scope
    from ecg_shared.registry import active_versions

    with session_scope() as session:
        rows = [(r.name, r.version, r.artifact_uri, r.artifact_sha256) for r in active_versions(session)]
    store = store or ArtifactStore()
    loaded = previous.models if previous else {}
    models, errors = {}, {}
    for name, version, uri, digest in rows:
        current = loaded.get(name)
        if current is not None and current.version == version and current.sha256 == digest:
            models[name] = current
            continue
        try:
            data = store.get(uri)
            if digest and sha256(data) != digest:
                raise ModelLoadError(f"artifact {uri} does not match its recorded sha256")
            models[name] = load_model(data, version=version, expected_name=name)
        except Exception as exc:  # a missing or broken file must not take the other models down with it
            errors[name] = f"v{version}: {type(exc).__name__}: {exc}"
            log.warning("could not load %s %s", name, errors[name])
            if current is not None:  # keep serving the version we have
                models[name] = current
            continue
        log.info("loaded %s v%s (%s)", name, version, ", ".join(models[name].providers))
    revision = ";".join(f"{n}:{v}" for n, v, _, _ in rows)
    if errors:  # differs from the registry's revision, so the next poll tries again
        revision += ";unloaded=" + ",".join(sorted(errors))
    return ModelSet(models, revision, source="registry", errors=errors)
