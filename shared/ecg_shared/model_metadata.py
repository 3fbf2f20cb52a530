"""What every exported ONNX model carries about itself (ONNX ``metadata_props``), and how to read it back.

Training writes it (:meth:`ModelMetadata.to_onnx_props`); inference reads it from the session
(:meth:`ModelMetadata.from_onnx_props` over ``session.get_modelmeta().custom_metadata_map``). The preprocessing spec
inside is the one :func:`ecg_shared.preprocessing.prepare` applies, so a served model sees exactly what it trained on.
Inputs: ``ecg`` float32 (batch, window_samples, n_leads) and, for a model fused with beat features
(``features`` set), ``features`` float32 (batch, n_features): :func:`ecg_shared.beats.recording_features` of the
window's recording. Output: ``probabilities`` float32 (batch, n_classes), before calibration: the service and the
trainer apply ``calibration`` (:func:`ecg_shared.calibration.calibrate`) to a recording's mean over its windows.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ecg_shared.preprocessing import PreprocessingSpec

INPUT_NAME = "ecg"
FEATURES_INPUT_NAME = "features"
OUTPUT_NAME = "probabilities"
# In a graph fused with beat features (weight w < 1), the features' share of the output, (1 - w) * trees(features):
# ``probabilities = w * network(ecg) + features_part``. Explanations recompute it alone for changed features.
FEATURES_PART_NAME = "blend/features_part"


@dataclass
class ModelMetadata:
    name: str  # registry model name, e.g. "rhythm-1lead"
    family: str  # cnn | resnet | inception
    classes: list[str]  # output order, labels as trained (e.g. ["N", "A", "O", "~"])
    normal_classes: list[str]  # classes that mean "normal" (e.g. ["N"])
    preprocessing: PreprocessingSpec
    unreadable_classes: list[str] = field(default_factory=list)  # e.g. ["~"]: too noisy to judge
    threshold: float = 0.5  # P(abnormal) at or above which the call is "abnormal" (chosen on validation)
    training_job_id: int | None = None
    dataset_fingerprint: str = ""
    version: int | None = None
    features: dict[str, Any] | None = None  # ecg_shared.beats.FeatureSpec.to_dict(): the graph's second input
    calibration: dict[str, Any] | None = (
        None  # e.g. {"method": "temperature", "temperature": 1.4}, fitted on validation
    )
    abnormal_prevalence: float | None = None  # share of abnormal recordings among the readable ones in training
    # A model fused with beat features: the network's weight in the blend with the features' trees, chosen on
    # validation (0: the answer is the trees' alone, which no blanked stretch of signal can change). None: unknown
    # (files made before it was written) or a network alone.
    network_weight: float | None = None
    # Each feature's median over the training split's normal recordings: what a measurement is set to when the
    # explanation asks how much it moved the answer (ecg_inference.explain). None: files made before it was written.
    feature_reference: list[float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Features this code cannot compute (an unknown version) make the metadata invalid: the model is refused
        where it is read, not at its first request."""
        if self.features is not None:
            names = self.feature_spec.names  # parsing it is the check: FeatureSpec refuses an unknown version
            if self.feature_reference is not None and len(self.feature_reference) != len(names):
                raise ValueError(
                    f"feature_reference holds {len(self.feature_reference)} values for the {len(names)} features"
                )

    @property
    def feature_spec(self):
        """The :class:`ecg_shared.beats.FeatureSpec` of the ``features`` input; None for a network alone."""
        from ecg_shared.beats import FeatureSpec

        return None if self.features is None else FeatureSpec.from_dict(self.features)

    @property
    def signal_blind(self) -> bool:
        """Its answer comes from the recording's features alone (network weight 0): occlusion cannot explain it."""
        return self.features is not None and self.network_weight == 0

    @property
    def abnormal_classes(self) -> list[str]:
        return [c for c in self.classes if c not in self.normal_classes and c not in self.unreadable_classes]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["preprocessing"] = json.loads(self.preprocessing.to_json())
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMetadata:
        data = dict(data)
        data["preprocessing"] = PreprocessingSpec.from_json(json.dumps(data["preprocessing"]))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_onnx_props(self) -> dict[str, str]:
        return {"ecg_model": json.dumps(self.to_dict(), sort_keys=True)}

    @classmethod
    def from_onnx_props(cls, props: dict[str, str]) -> ModelMetadata:
        if "ecg_model" not in props:
            raise ValueError("ONNX model carries no 'ecg_model' metadata")
        return cls.from_dict(json.loads(props["ecg_model"]))
