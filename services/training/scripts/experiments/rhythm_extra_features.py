"""Validation split only: would more rhythm features make the fused model better? The model file's own network output
(the graph's ``network/probabilities``, before the blend) on the card's validation split, blended as the trainer does
(``fusion.choose_blend_weight``) with boosted trees trained on the training split's features: the model's features
alone, and with 14 more (the share of RR intervals rejected, heart rate percentiles 5 and 95, irregularity and RR
variation over 8 successive beats at their most and least, COSEn (Lake and Moorman), R amplitude variation, activity
in the TQ intervals, the lead's share of power at 4-9 Hz and 9-20 Hz and its dominant frequency). Trees seeds 0-2.
The test split is never read.

    ECG_DATABASE_URL=... .venv/bin/python services/training/scripts/experiments/rhythm_extra_features.py \\
        models/rhythm-1lead.onnx
"""

from __future__ import annotations

import sys
from itertools import pairwise
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import drift_reference  # the script beside it: the card's recipe and split

from ecg_shared.beats import BEAT_AFTER_S, BEAT_BEFORE_S, MAX_RR_S, MIN_RR_S, detect_beats
from ecg_shared.evaluation import evaluate
from ecg_training.fusion import choose_blend_weight, fit_feature_model


def extra_features(x: np.ndarray, fs: float) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).ravel()
    out = np.zeros(14)
    peaks = detect_beats(x, fs)
    intervals = np.diff(peaks) / fs
    kept = (intervals >= MIN_RR_S) & (intervals <= MAX_RR_S)
    out[0] = 1 - kept.mean() if intervals.size else 1.0
    rr = intervals[kept]
    if rr.size >= 6:
        rate = 60 / rr
        out[1], out[2] = np.percentile(rate, 5), np.percentile(rate, 95)
        steps = np.abs(np.diff(rr))
        k = 8
        if steps.size >= k:
            irregular = np.convolve((steps > 0.15 * rr[:-1]).astype(float), np.ones(k) / k, mode="valid")
            variation = np.array([rr[i : i + k].std() / rr[i : i + k].mean() for i in range(rr.size - k + 1)])
            out[3], out[4], out[5], out[6] = irregular.max(), irregular.min(), variation.max(), variation.min()
        r = 0.03  # COSEn: SampEn(m=1, r=30 ms) - ln(2r) - ln(mean RR)
        close = np.abs(rr[:, None] - rr[None, :]) <= r
        c = rr.size - 1
        b = close[:c, :c].sum() - c
        a = (close[:c, :c] & close[1 : c + 1, 1 : c + 1]).sum() - c
        entropy = -np.log(a / b) if a > 0 and b > 0 else 2.5
        out[7] = entropy - np.log(2 * r) - np.log(rr.mean())
    before, after = round(BEAT_BEFORE_S * fs), round(BEAT_AFTER_S * fs)
    inside = peaks[(peaks - before >= 0) & (peaks + after < x.size)]
    if inside.size >= 4:
        amplitudes = x[inside]
        out[8] = amplitudes.std() / (np.abs(amplitudes).mean() + 1e-9)
        activity = []
        for r0, r1 in pairwise(peaks):
            start, end = r0 + int(0.45 * fs), r1 - int(0.2 * fs)
            if end - start >= int(0.08 * fs):
                segment = x[start:end]
                t = np.arange(segment.size)
                segment = segment - np.polyval(np.polyfit(t, segment, 1), t)
                activity.append(np.sqrt(np.mean(segment**2)))
        qrs = np.median(np.abs(amplitudes - np.median(x)))
        if activity:
            out[9] = np.median(activity) / (qrs + 1e-9)
            out[10] = len(activity) / max(len(peaks) - 1, 1)
    power = np.abs(np.fft.rfft(x - x.mean())) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / fs)
    total = power.sum() + 1e-12
    out[11] = power[(freqs >= 4) & (freqs <= 9)].sum() / total
    out[12] = power[(freqs > 9) & (freqs <= 20)].sum() / total
    out[13] = freqs[np.argmax(power * (freqs >= 0.5))]
    return out


def main(model_path: Path) -> None:
    run = drift_reference.network_on_validation(model_path)
    card, metadata, data, network = run.card, run.metadata, run.data, run.network
    n_classes = len(card["classes"])
    validation, fs = data.validation, data.spec.sampling_rate

    def score(p: np.ndarray) -> float:
        figures = evaluate(
            p,
            validation.y,
            data.classes,
            list(metadata.normal_classes),
            list(metadata.unreadable_classes),
            metadata.threshold,
        )
        return figures["mean_f1_readable"]

    extra = {
        name: np.stack([extra_features(split.signals[i][:, 0], fs) for i in range(len(split))])
        for name, split in (("train", data.train), ("validation", validation))
    }
    print(f"{model_path.name}: network alone {score(network):.4f} on {len(validation)} validation recordings")
    sets = {
        "the model's features": (data.train.features, validation.features),
        "with 14 more": (
            np.hstack([data.train.features, extra["train"]]),
            np.hstack([validation.features, extra["validation"]]),
        ),
    }
    for label, (train_features, validation_features) in sets.items():
        for seed in (0, 1, 2):
            trees = fit_feature_model(train_features, data.train.y, n_classes, seed).predict(validation_features)
            weight, scores = choose_blend_weight(network, trees, score)
            print(
                f"  {label}, trees seed {seed}: trees alone {scores[0.0]:.4f}, fused {scores[weight]:.4f} (w {weight})"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
