"""Training throughput (issues 4 and 8): samples/second of the training input pipeline and of one epoch per model
family, on real CinC 2017 recordings with the bundled rhythm model's preprocessing (lead II, 150 Hz, 30 s windows).

Input pipeline, in the same run on the same recordings:

- **baseline**: what a per-sample generator does: every epoch, each recording goes through the whole
  ``prepare(record, spec)`` (filters, resampling, windowing, normalisation) and one window is picked;
- **training pipeline** (``ecg_training.data.RandomCrops``): recordings are cleaned once (filters, resampling), and
  each epoch draws one random crop per recording, normalised by ``window_batch``; the one-off cleaning is reported
  as its own row.

One epoch per family: ``model.fit`` over the same windows after a warm-up batch (graph tracing excluded), float32 for
every family and ``mixed_bfloat16`` for the ResNet, which is why jobs train in float32 by default.
``python -m bench.training [N]`` prints the result as JSON.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

EPOCH_SAMPLES = 192
BATCH_SIZE = 32


def _records(n: int):
    """``n`` real CinC recordings; beyond the 6,823 the set holds, the same recordings again (same objects)."""
    from ecg_shared.formats import read_ecg
    from ecg_shared.settings import get_settings

    folder = Path(get_settings().data_dir) / "cinc2017"
    headers = sorted(folder.glob("*.hea"))[:n]
    if not headers:
        raise RuntimeError(f"CinC 2017 not found in {folder}: set ECG_DATA_DIR")
    distinct = [read_ecg(h) for h in headers]
    return [distinct[i % len(distinct)] for i in range(n)], len(distinct)


def _spec():
    from ecg_shared.preprocessing import PreprocessingSpec

    return PreprocessingSpec(sampling_rate=150, window_samples=4500, leads=("II",), normalisation="zscore")


def _timed(function) -> tuple[float, object]:
    started = time.perf_counter()
    value = function()
    return time.perf_counter() - started, value


def input_pipeline(records, spec) -> tuple[list[dict], dict]:
    from ecg_shared.preprocessing import clean, prepare
    from ecg_training.data import RandomCrops, Split

    rng = np.random.default_rng(0)

    def per_sample_epoch():
        windows = [prepare(record, spec) for record in records]
        return np.stack([w[rng.integers(len(w))] for w in windows])

    baseline_s, _ = _timed(per_sample_epoch)
    clean_s, signals = _timed(lambda: [clean(record, spec) for record in records])
    split = Split(list(range(len(records))), signals, np.zeros(len(records), dtype=np.int64))
    batches = RandomCrops(split, spec, n_classes=4, batch_size=BATCH_SIZE, seed=0)
    crops_s, _ = _timed(lambda: [batches[i] for i in range(len(batches))])
    n = len(records)
    rows = [
        {"method": "baseline: prepare() per sample every epoch", "samples": n, "samples_per_s": n / baseline_s},
        {"method": "pipeline: clean once (one-off)", "samples": n, "samples_per_s": n / clean_s},
        {"method": "pipeline: random crops per epoch", "samples": n, "samples_per_s": n / crops_s},
    ]
    ratios = {"input pipeline per epoch / baseline": baseline_s / crops_s}
    return rows, ratios


def epochs(records, spec, families=("cnn", "resnet", "inception")) -> tuple[list[dict], dict]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from ecg_shared.preprocessing import clean, window_batch
    from ecg_training.families import build_model

    x = np.stack([window_batch(clean(r, spec), spec)[0] for r in records[:EPOCH_SAMPLES]])
    y = np.eye(4, dtype=np.float32)[np.arange(len(x)) % 4]
    rows, rates = [], {}
    for family, mixed in [(f, False) for f in families] + [("resnet", True)]:
        keras.utils.set_random_seed(0)
        model = build_model(family, 1, 4, mixed_precision=mixed)
        model.compile(optimizer="adam", loss="categorical_crossentropy", jit_compile=False)
        model.fit(x[:BATCH_SIZE], y[:BATCH_SIZE], batch_size=BATCH_SIZE, verbose=0)  # tracing, not measured
        seconds, _ = _timed(lambda m=model: m.fit(x, y, batch_size=BATCH_SIZE, epochs=1, verbose=0))
        policy = "mixed_bfloat16" if mixed else "float32"
        rates[(family, policy)] = len(x) / seconds
        rows.append(
            {
                "method": f"one epoch: {family} ({policy})",
                "samples": len(x),
                "parameters": model.count_params(),
                "samples_per_s": len(x) / seconds,
            }
        )
    ratios = {
        "resnet mixed_bfloat16 / float32": rates[("resnet", "mixed_bfloat16")] / rates[("resnet", "float32")],
        "cnn / resnet (float32)": rates[("cnn", "float32")] / rates[("resnet", "float32")],
    }
    return rows, ratios


def run(n: int = 600) -> dict:
    records, distinct = _records(n)
    repeats = f" ({distinct} distinct, each used again in turn)" if distinct < len(records) else ""
    spec = _spec()
    pipeline_rows, pipeline_ratios = input_pipeline(records, spec)
    epoch_rows, epoch_ratios = epochs(records, spec)
    return {
        "name": "training",
        "title": "Training: input pipeline and one epoch per family (CinC 2017, lead II, 150 Hz, 30 s windows)",
        "rows": pipeline_rows + epoch_rows,
        "ratios": {**pipeline_ratios, **epoch_ratios},
        "notes": (
            f"{len(records)} real CinC 2017 recordings{repeats} for the input pipeline; one epoch = "
            f"{min(len(records), EPOCH_SAMPLES)} windows of 4500 samples, batch {BATCH_SIZE}, after a warm-up "
            "batch. The model's epoch, not the input pipeline, bounds training: compare the rows' samples/s."
        ),
    }


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 600), indent=2))
