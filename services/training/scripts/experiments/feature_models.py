"""Validation split only: which model of the beat (and morphology) features fuses best with the network? For each model
file given (each trained on its own split, the card's), the file's own network output (``network/probabilities``,
before the blend) on the card's validation split is blended as the trainer blends (``fusion.choose_blend_weight``,
the job's primary metric) with each candidate feature model fitted on the training split's features:

- ``gbm``: the trainer's boosted trees (``fusion.fit_feature_model``), seeds 0-2;
- ``gbm x5``: the mean of five of them (seeds 0-4);
- ``forest``, ``extra trees``: 500 randomised trees (scikit-learn's RandomForest / ExtraTrees, leaves of at least 3),
  seeds 0-2;
- ``logistic``: standardised features, L2 logistic regression, its strength chosen by 5-fold cross-validation on the
  training split.

With ``--intervals``, the trainer's trees are also fitted with four more features, the PR, QRS, QT and QTc intervals
of neurokit2's delineator as the report measures them (``ecg_shared.intervals.measure_intervals`` on the stored
recording; -1 where not measured), seeds 0-2.

With ``--waves``, the trainer's trees are also fitted with what ``beats+morphology`` at version beats-2 adds to the
model's own features (``wave_features``): for a 12-lead beats-1 model the QRS waves of each lead's median beat (Q
depth, R height and S depth; the Sokolow-Lyon and Cornell voltages; where R first outgrows S across V1-V6), for a
single-lead ``beats`` model its lead's median-beat morphology and waves; on the signal the model's features come
from, seeds 0-2. With ``--waves --conduction``, also with the waves and
``conduction_features`` (each lead's QRS width, the widest, each lead's T-peak latency, the R' of V1 and V2); with
``--waves --relative``, also with the waves and each lead's T and ST over its QRS (``relative``).

With ``--templates``, the trainer's trees are fitted with the model's own features and also with each lead's median
beat itself (``template_features``: 17 points from 100 ms before R to 400 ms after it, per lead), seeds 0-2.

The test split is never read.

    ECG_DATABASE_URL=... .venv/bin/python services/training/scripts/experiments/feature_models.py \\
        models/normal-12lead.onnx /tmp/other-split/normal-12lead-s1.onnx ...
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegressionCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import drift_reference  # the script beside it: the card's recipe and split

from ecg_shared.db import session_scope
from ecg_shared.evaluation import evaluate, primary_metric
from ecg_training.fusion import FeatureModel, choose_blend_weight, fit_feature_model


def _placed(model, n_classes: int):
    return lambda features: FeatureModel(model, n_classes).predict(features)


def candidates(train_x: np.ndarray, train_y: np.ndarray, n_classes: int) -> dict[str, list]:
    """name -> one predictor (features -> probabilities over the job's classes) per seed."""
    x = np.asarray(train_x, dtype=np.float32)
    out: dict[str, list] = {}
    out["gbm"] = [fit_feature_model(x, train_y, n_classes, seed).predict for seed in (0, 1, 2)]
    bag = [fit_feature_model(x, train_y, n_classes, seed) for seed in range(5)]
    out["gbm x5"] = [lambda f, bag=bag: np.mean([m.predict(f) for m in bag], axis=0)]
    for name, family in (("forest", RandomForestClassifier), ("extra trees", ExtraTreesClassifier)):
        out[name] = [
            _placed(
                family(n_estimators=500, min_samples_leaf=3, class_weight="balanced", n_jobs=2, random_state=seed).fit(
                    x, train_y
                ),
                n_classes,
            )
            for seed in (0, 1, 2)
        ]
    logistic = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=8, cv=5, max_iter=2000, class_weight="balanced"))
    logistic.fit(x, train_y)
    out["logistic"] = [_placed(logistic, n_classes)]
    return out


def interval_features(recording_ids: list[int]) -> np.ndarray:
    """(recordings, 4): PR, QRS, QT, QTc in ms of each stored recording, -1 where the delineator gives none."""
    from sqlalchemy import select

    from ecg_shared.db.models import Recording
    from ecg_shared.intervals import measure_intervals

    out = np.full((len(recording_ids), 4), -1.0)
    with session_scope() as db:
        rows = {r.id: r for r in db.scalars(select(Recording).where(Recording.id.in_(recording_ids)))}
        for i, rid in enumerate(recording_ids):
            found = measure_intervals(rows[rid].to_record())
            for j, value in enumerate((found.pr.ms, found.qrs.ms, found.qt.ms, found.qtc_ms)):
                if value is not None:
                    out[i, j] = value
    return out


WAVE_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def _cleaned(recording_ids: list[int], spec) -> list[np.ndarray]:
    """Each stored recording cleaned as the model's spec cleans it (what its features are computed on), in order."""
    from sqlalchemy import select

    from ecg_shared.db.models import Recording
    from ecg_shared.preprocessing import clean

    with session_scope() as db:
        rows = {r.id: r for r in db.scalars(select(Recording).where(Recording.id.in_(recording_ids)))}
        return [np.asarray(clean(rows[rid].to_record(), spec), dtype=np.float64) for rid in recording_ids]


def wave_features(recording_ids: list[int], spec, features) -> np.ndarray:
    """What ``beats+morphology`` at features version beats-2 (``ecg_shared.beats``) computes beyond the model's own
    ``features``, whose values are its first ones: for a 12-lead beats-1 model (12 x 3 + 3 values) each lead's median
    beat's Q depth, R height and S depth, then the Sokolow-Lyon, Cornell and R-transition criteria (this experiment
    measured them first with its own copy of that computation, equal on 120 PTB-XL records); for a single-lead
    ``beats`` model (4 + 3) its lead's median-beat QRS amplitude, net deflection, ST level, T amplitude and waves."""
    from ecg_shared.beats import FeatureSpec, recording_features

    leads = tuple(spec.leads)
    full = FeatureSpec(features.rhythm_lead, leads, "beats-2")
    first = len(features.names)
    assert full.names[:first] == features.names, "the model's features are not where beats-2's begin"
    return np.array(
        [recording_features(x, spec.sampling_rate, list(leads), full)[first:] for x in _cleaned(recording_ids, spec)]
    )


def conduction_features(recording_ids: list[int], spec) -> np.ndarray:
    """(recordings, 12 + 1 + 12 + 2): each lead's QRS width at half its amplitude and their largest (bundle branch
    blocks widen the QRS), each lead's T-peak latency after R (a QT proxy), and the R' of V1 and V2 (a second
    positive wave after S: RSR', right bundle branch block), on the median beats of the beats found on lead II as
    ``recording_features`` finds them, from the PR baseline. Zeros without enough beats."""
    from ecg_shared.beats import (
        BEAT_AFTER_S,
        BEAT_BEFORE_S,
        QRS_HALF_WIDTH_S,
        T_WINDOW_S,
        _half_amplitude_width,
    )

    fs = spec.sampling_rate
    before, after = round(BEAT_BEFORE_S * fs), round(BEAT_AFTER_S * fs)
    offsets = np.arange(-before, after + 1) / fs
    in_qrs = np.abs(offsets) <= QRS_HALF_WIDTH_S
    in_t = (offsets >= T_WINDOW_S[0]) & (offsets <= T_WINDOW_S[1])
    leads = list(spec.leads)
    out = np.zeros((len(recording_ids), 12 + 1 + 12 + 2))
    for i, templates in median_beats(recording_ids, spec):
        widths = [_half_amplitude_width(templates[:, k], before, fs) for k in range(len(WAVE_LEADS))]
        latency = offsets[in_t][np.argmax(np.abs(templates[in_t]), axis=0)]
        primes = []
        for name in ("V1", "V2"):
            qrs = templates[in_qrs, leads.index(name)]
            top = int(np.argmax(qrs))
            low = top + int(np.argmin(qrs[top:]))
            primes.append(max(0.0, float(qrs[low:].max())) if low < qrs.size - 1 else 0.0)
        out[i] = np.concatenate([widths, [max(widths)], latency, primes])
    return out


TEMPLATE_OFFSETS_S = np.round(np.arange(-0.10, 0.401, 0.03), 3)  # 17 points from before the QRS to the T wave


def template_features(recording_ids: list[int], spec) -> np.ndarray:
    """(recordings, 12 x 17): each lead's median beat itself, from the PR baseline, sampled every 30 ms from 100 ms
    before the R peak to 400 ms after it (the QRS, the ST segment and the T wave as the trees' own inputs), on the
    beats found on lead II as ``recording_features`` finds them. Zeros without enough beats."""
    from ecg_shared.beats import BEAT_AFTER_S, BEAT_BEFORE_S

    fs = spec.sampling_rate
    before, after = round(BEAT_BEFORE_S * fs), round(BEAT_AFTER_S * fs)
    offsets = np.arange(-before, after + 1) / fs
    picks = [int(np.argmin(np.abs(offsets - t))) for t in TEMPLATE_OFFSETS_S]
    out = np.zeros((len(recording_ids), len(spec.leads) * len(picks)))
    for i, templates in median_beats(recording_ids, spec):
        out[i] = templates[picks].T.ravel()
    return out


def median_beats(recording_ids: list[int], spec):
    """(index, median beats (samples, leads) from the PR baseline) of each recording with enough beats found on lead
    II as ``recording_features`` finds them, the beat window from BEAT_BEFORE_S before R to BEAT_AFTER_S after it."""
    from ecg_shared.beats import BEAT_AFTER_S, BEAT_BEFORE_S, MIN_BEATS, PR_BASELINE_S, detect_beats

    fs = spec.sampling_rate
    before, after = round(BEAT_BEFORE_S * fs), round(BEAT_AFTER_S * fs)
    offsets = np.arange(-before, after + 1) / fs
    in_pr = (offsets >= PR_BASELINE_S[0]) & (offsets <= PR_BASELINE_S[1])
    lead_ii = list(spec.leads).index("II")
    for i, x in enumerate(_cleaned(recording_ids, spec)):
        peaks = detect_beats(x[:, lead_ii], fs)
        inside = peaks[(peaks - before >= 0) & (peaks + after < x.shape[0])]
        if inside.size >= MIN_BEATS - 1:
            templates = np.median(x[inside[:, None] + np.arange(-before, after + 1)[None, :], :], axis=0)
            yield i, templates - templates[in_pr].mean(axis=0)


def relative(x: np.ndarray) -> np.ndarray:
    """``x`` (beats-1 features of 12 leads, then the waves) with each lead's T amplitude and ST level over its QRS
    amplitude appended (24 values)."""
    from ecg_shared.beats import FEATURE_NAMES, MORPHOLOGY_NAMES

    leads = x[:, len(FEATURE_NAMES) : len(FEATURE_NAMES) + 12 * len(MORPHOLOGY_NAMES)].reshape(len(x), 12, -1)
    qrs = np.maximum(leads[:, :, 0], 1e-3)
    return np.hstack([x, leads[:, :, 3] / qrs, leads[:, :, 2] / qrs])


def fit_arms(arms, train_y, n_classes: int, network: np.ndarray, score, summary: dict[str, list[float]]) -> None:
    """For each arm (name, (training features, validation features)) and trees seeds 0-2: the trainer's trees fitted
    and blended with ``network`` as the trainer blends; the fused scores go to ``summary``."""
    for seed in (0, 1, 2):
        for name, (tx, vx) in arms:
            predict = fit_feature_model(tx, train_y, n_classes, seed).predict
            weight, scores = choose_blend_weight(network, predict(vx), score)
            summary.setdefault(name, []).append(scores[weight])
            print(f"  {name} seed {seed}: alone {scores[0.0]:.4f} fused {scores[weight]:.4f} (w {weight})")


def compare(model_path: Path, with_intervals: bool, summary: dict[str, list[float]], with_waves: bool = False) -> None:
    """Print each candidate's validation scores for one model file; add its fused scores to ``summary``."""
    run = drift_reference.network_on_validation(model_path)
    card, metadata, data, network = run.card, run.metadata, run.data, run.network
    n_classes = len(card["classes"])
    validation = data.validation

    def score(p: np.ndarray) -> float:
        figures = evaluate(
            p, validation.y, data.classes, list(metadata.normal_classes), list(metadata.unreadable_classes), 0.5
        )
        return primary_metric(figures, n_classes)[1]

    if network is None:  # a file of weight 0 holds no network: what it exports is the trees alone
        print(f"{model_path.name}: no network in the file (weight 0), the trees alone are compared")
        network = np.full((len(validation), n_classes), 1.0 / n_classes)  # uninformative: any weight is the trees'
    else:
        print(f"{model_path.name}: network alone {score(network):.4f} on {len(validation)} validation recordings")
    started = time.monotonic()
    if with_intervals:
        train_x = np.hstack([data.train.features, interval_features(data.train.recording_ids)])
        validation_x = np.hstack([validation.features, interval_features(validation.recording_ids)])
        print(f"  intervals measured on {np.mean(validation_x[:, -4:] >= 0, axis=0).round(2)} of validation")
        for seed in (0, 1, 2):
            predict = fit_feature_model(train_x, data.train.y, n_classes, seed).predict
            weight, scores = choose_blend_weight(network, predict(validation_x), score)
            summary.setdefault("gbm + intervals", []).append(scores[weight])
            print(f"  gbm + intervals seed {seed}: alone {scores[0.0]:.4f} fused {scores[weight]:.4f} (w {weight})")
        return
    if "--templates" in sys.argv:  # the median beats themselves, beside the model's own features
        arms = [
            ("gbm", (data.train.features, validation.features)),
            (
                "gbm + templates",
                (
                    np.hstack([data.train.features, template_features(data.train.recording_ids, data.spec)]),
                    np.hstack([validation.features, template_features(validation.recording_ids, data.spec)]),
                ),
            ),
        ]
        fit_arms(arms, data.train.y, n_classes, network, score, summary)
        print(f"  ({time.monotonic() - started:.0f} s)")
        return
    if with_waves:
        features = metadata.feature_spec
        train_x = np.hstack([data.train.features, wave_features(data.train.recording_ids, data.spec, features)])
        validation_x = np.hstack([validation.features, wave_features(validation.recording_ids, data.spec, features)])
        arms = [("gbm", (data.train.features, validation.features)), ("gbm + waves", (train_x, validation_x))]
        if "--relative" in sys.argv:  # each lead's T and ST against its QRS: what the trees see, as ratios
            arms.append(("gbm + waves + relative", (relative(train_x), relative(validation_x))))
        if "--conduction" in sys.argv:
            arms.append(
                (
                    "gbm + waves + conduction",
                    (
                        np.hstack([train_x, conduction_features(data.train.recording_ids, data.spec)]),
                        np.hstack([validation_x, conduction_features(validation.recording_ids, data.spec)]),
                    ),
                )
            )
        fit_arms(arms, data.train.y, n_classes, network, score, summary)
        print(f"  ({time.monotonic() - started:.0f} s)")
        return
    for name, predictors in candidates(data.train.features, data.train.y, n_classes).items():
        alone, fused = [], []
        for predict in predictors:
            weight, scores = choose_blend_weight(network, predict(validation.features), score)
            alone.append(scores[0.0])
            fused.append(scores[weight])
            summary.setdefault(name, []).append(scores[weight])
        print(
            f"  {name:12s} alone {' / '.join(f'{v:.4f}' for v in alone)}  fused {' / '.join(f'{v:.4f}' for v in fused)}"
        )
    print(f"  ({time.monotonic() - started:.0f} s)")


def main(model_paths: list[Path], with_intervals: bool = False, with_waves: bool = False) -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    summary: dict[str, list[float]] = {}
    for model_path in model_paths:
        compare(model_path, with_intervals, summary, with_waves)
    print("mean fused over files and seeds:", {k: round(float(np.mean(v)), 4) for k, v in summary.items()})


if __name__ == "__main__":
    options = {"--intervals", "--waves", "--conduction", "--relative", "--templates"}
    main([Path(p) for p in sys.argv[1:] if p not in options], "--intervals" in sys.argv, "--waves" in sys.argv)
