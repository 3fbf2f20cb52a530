"""The maintenance scripts beside the bundled recipes (services/training/scripts), on small real ONNX files."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import onnx
import pytest

from ecg_shared.model_metadata import ModelMetadata
from ecg_shared.settings import REPO_ROOT
from tests.inference.onnx_models import rhythm_metadata, tiny_model, twelve_lead_metadata


def _script(name: str):
    path = REPO_ROOT / "services" / "training" / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _card(lead: str) -> dict:
    return {
        "summary": f"resnet classifier of 1-lead ECG ({lead}) into N, A, O, ~; normal = N; unreadable = ~",
        "limitations": [
            "Trained on cinc2017 only.",
            f"Expects the preprocessing stored in the ONNX metadata: leads {lead}, resampled to 300 Hz, 30 s windows.",
        ],
        "preprocessing": {"leads": [lead], "sampling_rate": 300.0},
    }


def test_renaming_a_single_lead_models_lead_changes_the_names_and_not_the_graph(tmp_path):
    metadata = dataclasses.replace(
        rhythm_metadata(), features={"rhythm_lead": "II", "morphology_leads": [], "version": "beats-1"}
    )
    path = tmp_path / "rhythm-1lead.onnx"
    path.write_bytes(tiny_model(metadata))
    (tmp_path / "rhythm-1lead.card.json").write_text(json.dumps(_card("II")))
    before = onnx.load(str(path))

    _script("single_lead_name").main(path, "I")

    after = onnx.load(str(path))
    assert after.graph.SerializeToString() == before.graph.SerializeToString()
    renamed = ModelMetadata.from_onnx_props({p.key: p.value for p in after.metadata_props})
    assert renamed.preprocessing.leads == ("I",) and renamed.features["rhythm_lead"] == "I"
    assert dataclasses.replace(renamed.preprocessing, leads=("II",)) == metadata.preprocessing
    assert renamed.calibration == metadata.calibration and renamed.threshold == metadata.threshold
    assert json.loads((tmp_path / "rhythm-1lead.card.json").read_text()) == _card("I")


def test_only_a_single_lead_models_lead_is_renamed(tmp_path):
    path = tmp_path / "normal-12lead.onnx"
    path.write_bytes(tiny_model(twelve_lead_metadata()))
    (tmp_path / "normal-12lead.card.json").write_text("{}")
    with pytest.raises(SystemExit, match="reads 12 leads"):
        _script("single_lead_name").main(path, "I")
    path = tmp_path / "rhythm-1lead.onnx"
    path.write_bytes(tiny_model(rhythm_metadata()))
    (tmp_path / "rhythm-1lead.card.json").write_text(json.dumps(_card("V1")))  # a card that names another lead
    untouched = path.read_bytes()
    with pytest.raises(SystemExit, match="does not name lead II"):
        _script("single_lead_name").main(path, "I")
    assert path.read_bytes() == untouched  # nothing written when the card cannot follow
