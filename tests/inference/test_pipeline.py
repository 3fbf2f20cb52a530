"""The classification steps in process: occlusion importances are exact, the verdict rule, batching helpers."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecg_inference.batcher import MicroBatcher
from ecg_inference.classify import (
    ClassificationError,
    classify_prepared,
    combine,
    prepare_recording,
    run_batched,
)
from ecg_inference.cli import expand_files
from ecg_inference.models import ModelSet, load_model
from ecg_shared.formats import Record, read_ecg
from ecg_shared.quality import QualityReport
from ecg_shared.schemas import ModelResult
from tests.inference.onnx_models import TWELVE_LEAD_SPEC, rhythm_metadata, tiny_model, twelve_lead_metadata


@pytest.fixture(scope="module")
def models() -> ModelSet:
    loaded = {m.name: load_model(tiny_model(m, seed=2), version=1) for m in (rhythm_metadata(), twelve_lead_metadata())}
    return ModelSet(loaded, "test")


@pytest.mark.parametrize("normalisation", ["zscore", "minmax"])
def test_segment_and_lead_importance_are_the_drop_of_the_predicted_class(normalisation, data_dir):
    metadata = twelve_lead_metadata(preprocessing=replace(TWELVE_LEAD_SPEC, normalisation=normalisation))
    models = ModelSet({metadata.name: load_model(tiny_model(metadata, seed=4), version=1)}, "test")
    record = read_ecg(data_dir / "ptbxl" / "00003_lr.hea")
    prepared = prepare_recording(record, models, explain=True, only="normal-12lead")
    answer = classify_prepared([prepared], [time.perf_counter()])[0]
    (run,), (explanation,) = prepared.runs, answer.explanation
    model = run.model
    base = model.predict(run.windows)[0]
    target = model.metadata.classes.index(explanation.target_class)
    assert target == int(np.argmax(base))
    for segment in explanation.segments[:3] + explanation.segments[-1:]:
        occluded = run.windows.copy()
        occluded[0, round(segment.start_s * 100) : round(segment.end_s * 100)] = run.windows[0].mean(axis=0)
        drop = base[target] - model.predict(occluded)[0, target]
        assert segment.importance == pytest.approx(drop, abs=1e-5)
    for lead in ("I", "V6"):
        occluded = run.windows.copy()
        index = run.lead_names.index(lead)
        occluded[0, :, index] = run.windows[0, :, index].mean()
        assert explanation.leads[lead] == pytest.approx(base[target] - model.predict(occluded)[0, target], abs=1e-5)


def test_segments_cover_only_the_real_signal(models, data_dir):
    """A 9.5 s recording padded into a 30 s rhythm window: segments end at 9.5 s, not in the padding."""
    record = read_ecg(data_dir / "cinc2017" / "A00001.hea")
    short = Record(record.signal[: int(9.5 * 300)], 300, ["II"])
    prepared = prepare_recording(short, models, explain=True)
    answer = classify_prepared([prepared], [time.perf_counter()])[0]
    segments = answer.explanation[0].segments
    assert len(segments) == 10 and segments[-1].end_s == pytest.approx(9.5)


def test_too_short_flat_and_nan_are_refused(models):
    t = np.arange(0, 4, 1 / 300)
    with pytest.raises(ClassificationError, match=r"too short: 4\.00 s; rhythm-1lead needs at least 5 s"):
        prepare_recording(Record(np.sin(7 * t), 300, ["II"]), models, explain=False)
    with pytest.raises(ClassificationError, match="flat line"):
        prepare_recording(Record(np.full(3000, 0.3), 300, ["II"]), models, explain=False)
    signal = np.sin(np.arange(0, 10, 1 / 300)).astype(np.float32)
    signal[5] = np.inf
    with pytest.raises(ClassificationError, match="1 NaN or infinite samples"):
        prepare_recording(Record(signal, 300, ["II"]), models, explain=False)
    with pytest.raises(ClassificationError, match="sampling rate 10 Hz is too low"):
        prepare_recording(Record(signal[:300], 10, ["II"]), models, explain=False)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rate=st.floats(1, 5000),
    seconds=st.floats(0.01, 40),
    n_leads=st.sampled_from([1, 2, 12]),
    kind=st.sampled_from(["ecg", "noise", "constant", "spikes", "huge"]),
    seed=st.integers(0, 2**16),
)
def test_any_signal_is_answered_or_refused_with_a_4xx(models, rate, seconds, n_leads, kind, seed):
    """Whatever arrives as samples: an answer, or a ClassificationError with a 4xx status; no other exception."""
    n = max(1, min(int(rate * seconds), 200_000))
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    base = {
        "ecg": np.sin(2 * np.pi * 1.2 * t) ** 15,
        "noise": rng.standard_normal(n),
        "constant": np.full(n, 0.7),
        "spikes": (rng.random(n) > 0.999) * 5.0,
        "huge": rng.standard_normal(n) * 1e30,
    }[kind]
    leads = (
        ["II"]
        if n_leads == 1
        else (
            ["I", "V1"] if n_leads == 2 else ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
        )
    )
    record = Record(np.tile(base[:, None], (1, n_leads)), rate, leads)
    try:
        prepared = prepare_recording(record, models, explain=True)
    except ClassificationError as exc:
        assert 400 <= exc.status < 500 and exc.message
        return
    answer = classify_prepared([prepared], [time.perf_counter()])[0]
    assert answer.verdict.label in ("normal", "abnormal", "unreadable")
    assert all(np.isfinite(list(m.probabilities.values())).all() for m in answer.models)


def _result(name, call, p_abnormal, probabilities=None, predicted="N"):
    return ModelResult(
        name=name,
        version=1,
        family="x",
        leads=["II"],
        probabilities=probabilities or {},
        predicted_class=predicted,
        call=call,
        p_abnormal=p_abnormal,
        threshold=0.5,
        windows=1,
    )


def test_verdict_rule(models):
    rhythm, twelve = models.models["rhythm-1lead"], models.models["normal-12lead"]
    good = QualityReport(True)
    # (disagreements between readable models: tests/inference/test_combination.py)
    noisy = _result("rhythm-1lead", "unreadable", 0.1, {"N": 0.2, "A": 0.05, "O": 0.05, "~": 0.7}, predicted="~")
    # One model finding it too noisy does not silence the others: the 12-lead model still decides.
    verdict = combine(good, [noisy, _result("b", "abnormal", 0.9)], [rhythm, twelve])
    assert verdict.label == "abnormal" and verdict.probability == pytest.approx(0.9)
    assert "rhythm-1lead found it too noisy" in verdict.rule
    verdict = combine(good, [noisy, _result("b", "normal", 0.3)], [rhythm, twelve])
    assert verdict.label == "normal" and verdict.probability == pytest.approx(0.7)
    # Unreadable when every applicable model says so.
    verdict = combine(good, [noisy], [rhythm])
    assert verdict.label == "unreadable" and verdict.probability == pytest.approx(0.7)
    verdict = combine(
        QualityReport(False, ["the lead is not clean enough to read"]), [_result("a", "normal", 0.1)], [rhythm]
    )
    assert verdict.label == "unreadable" and "not clean enough" in verdict.rule


def test_run_batched_equals_one_call_per_array(models):
    model = models.models["normal-12lead"]
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((n, 1000, 12)).astype(np.float32) for n in (1, 3, 2, 5)]
    together = run_batched(model, arrays, max_rows=4)
    for array, output in zip(arrays, together, strict=True):
        np.testing.assert_allclose(output, model.predict(array), atol=1e-6)


def test_micro_batcher_groups_concurrent_calls_and_keeps_order(models):
    model = models.models["rhythm-1lead"]
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal((int(n), 9000, 1)).astype(np.float32) for n in rng.integers(1, 4, 20)]
    calls = []
    original = model.predict

    def counting_predict(inputs):
        calls.append(len(inputs))
        return original(inputs)

    async def main():
        batcher = MicroBatcher(wait_ms=5, max_size=16)
        try:
            return await asyncio.gather(*(batcher.run(model, a) for a in arrays))
        finally:
            batcher.close()

    model.predict = counting_predict
    try:
        outputs = asyncio.run(main())
    finally:
        del model.predict
    assert sum(calls) == sum(len(a) for a in arrays) and len(calls) < len(arrays)
    assert max(calls) <= 16
    for array, output in zip(arrays, outputs, strict=True):
        np.testing.assert_allclose(output, original(array), atol=1e-6)


def test_batch_limit_is_eight_windows_on_cpu_unless_configured(models, monkeypatch):
    from ecg_inference.models import CPU_BATCH_WINDOWS
    from ecg_shared.settings import get_settings

    model = models.models["normal-12lead"]
    monkeypatch.delenv("ECG_BATCH_MAX_SIZE", raising=False)
    get_settings.cache_clear()
    assert model.providers == ["CPUExecutionProvider"] and model.batch_limit == CPU_BATCH_WINDOWS == 8
    monkeypatch.setenv("ECG_BATCH_MAX_SIZE", "32")
    get_settings.cache_clear()
    assert model.batch_limit == 32
    monkeypatch.undo()
    get_settings.cache_clear()


def test_expand_files_names_a_wfdb_record_once(tmp_path):
    hea, mat, other = tmp_path / "A1.hea", tmp_path / "A1.mat", tmp_path / "B2.mat"
    assert expand_files([hea, mat, other, hea]) == [hea, other]
    assert expand_files([Path(mat)]) == [mat]
