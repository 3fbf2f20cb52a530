"""Training at archive scale (issue 17): the streamed input pipeline's peak memory and throughput at n recordings,
and one epoch per model family (issues 4 and 8).

Streamed input, on n 12-lead PTB-XL recordings (the 790 real ones, each used again in turn: their cache entries are
distinct recordings to the cache) with the bundled 12-lead model's preprocessing (12 leads, 100 Hz, 10 s windows,
minmax), each step in a process of its own, so its peak RSS (``getrusage``) is that step's alone:

- **cache build** (one-off): each recording cleaned once by ``ecg_shared.preprocessing.clean`` into the on-disk
  cache (``ecg_training.cache``), chunk by chunk, as ``load_training_data`` does;
- **training worker, streamed**: what a training worker holds and does per epoch: the cache opened, a 70/15/15
  split, one epoch of ``RandomCrops`` (read a window at a time, ``ECG_TRAINING_INPUT_WORKERS`` threads) through
  ``model.fit`` of a one-layer model (what the pipeline delivers to fit), the validation windows through
  ``model.predict`` (``RecordingWindows``), and the bundled 12-lead family's (resnet, float32) train step on the same
  batches: the rate the model consumes samples at. Measured at n and at n/10 (the first tenth of the same cache): peak
  RSS flat in n is the target;
- **baseline, in memory**: the layout before the cache: every cleaned recording held in memory as a list of arrays,
  the same epoch of crops and the same model step.

One epoch per family: ``model.fit`` over 192 CinC 2017 windows (lead II, 150 Hz, 30 s) after a warm-up batch
(graph tracing excluded), float32 for every family and ``mixed_bfloat16`` for the ResNet, which is why jobs train in
float32 by default.

``python -m bench.training [N]`` prints the result as JSON; the cache lives in a temporary folder (``TMPDIR``),
removed at the end.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

EPOCH_SAMPLES = 192
BATCH_SIZE = 32
MODEL_BATCHES = 8
TWELVE = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def _timed(function) -> tuple[float, object]:
    started = time.perf_counter()
    value = function()
    return time.perf_counter() - started, value


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _twelve_lead_spec():
    from ecg_shared.preprocessing import PreprocessingSpec

    return PreprocessingSpec(sampling_rate=100, window_samples=1000, leads=TWELVE, normalisation="minmax")


def _data_dir() -> Path:
    from ecg_shared.settings import get_settings

    return Path(get_settings().data_dir)


# --- The steps, each run in its own process (`python -m bench.training STEP JSON`) -------------------------------


def build_cache(n: int, cache_dir: str) -> dict:
    """Clean n recordings (PTB-XL, each of the 790 used again in turn) into the cache, chunk by chunk."""
    from ecg_shared.formats import read_ecg
    from ecg_shared.preprocessing import clean
    from ecg_training.cache import CHUNK_RECORDINGS, SignalCache

    headers = sorted((_data_dir() / "ptbxl").glob("*.hea"))
    if not headers:
        raise RuntimeError(f"PTB-XL not found in {_data_dir() / 'ptbxl'}: set ECG_DATA_DIR")
    distinct = [read_ecg(h) for h in headers]
    spec, cache = _twelve_lead_spec(), SignalCache(cache_dir)
    started = time.perf_counter()
    for start in range(0, n, CHUNK_RECORDINGS):
        members = [(i, f"{i % len(distinct):064d}") for i in range(start, min(start + CHUNK_RECORDINGS, n))]
        cache.write(spec, members, {i: clean(distinct[i % len(distinct)], spec) for i, _ in members})
    seconds = time.perf_counter() - started
    size = sum(f.stat().st_size for f in Path(cache_dir).rglob("*") if f.is_file())
    return {"seconds": seconds, "distinct": len(distinct), "bytes": size, "peak_rss_mib": _peak_rss_mib()}


class InMemorySignals:
    """The layout before the cache (every cleaned recording an array in memory), with the cache's interface."""

    def __init__(self, arrays: list[np.ndarray]) -> None:
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays)

    def length(self, i: int) -> int:
        return self.arrays[i].shape[0]

    def read(self, i: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        return self.arrays[i][start:stop]


def worker(n: int, cache_dir: str, layout: str) -> dict:
    """One epoch's input work of a training worker over the first n cached recordings ("stream": read from the
    cache; "memory": all of them loaded first), and the model's train step on the same batches."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from ecg_training.cache import CHUNK_RECORDINGS, CachedSignals, SignalCache
    from ecg_training.data import RandomCrops, RecordingWindows, Split
    from ecg_training.families import build_model

    spec, cache = _twelve_lead_spec(), SignalCache(cache_dir)
    chunks = []
    for start in range(0, n, CHUNK_RECORDINGS):
        members = [(i, f"{i % 790:064d}") for i in range(start, min(start + CHUNK_RECORDINGS, n))]
        chunk = cache.open(spec, members)
        if chunk is None:
            raise RuntimeError(f"recordings {start}.. are not in the cache {cache_dir}")
        chunks.append(chunk)
    chunk_of = np.repeat(np.arange(len(chunks)), [len(c.ids) for c in chunks])
    row_of = np.concatenate([np.arange(len(c.ids)) for c in chunks])
    signals = CachedSignals(chunks, chunk_of, row_of)
    load_s = 0.0
    if layout == "memory":
        load_s, arrays = _timed(lambda: [signals[i] for i in range(n)])
        signals = InMemorySignals(arrays)
    y = np.arange(n) % 2
    order = np.random.default_rng(0).permutation(n)
    train, validation = np.sort(order[: int(0.7 * n)]), np.sort(order[int(0.7 * n) : int(0.85 * n)])

    def split(indices: np.ndarray) -> Split:
        part = signals.subset(indices) if layout == "stream" else InMemorySignals([arrays[i] for i in indices])
        return Split(indices.tolist(), part, y[indices])

    train_split, validation_split = split(train), split(validation)
    batches = RandomCrops(train_split, spec, 2, BATCH_SIZE, seed=0)
    keras.utils.set_random_seed(0)
    probe = keras.Sequential([keras.Input((spec.window_samples, 12)), keras.layers.GlobalAveragePooling1D()])
    probe.add(keras.layers.Dense(2, activation="softmax"))
    probe.compile(optimizer="adam", loss="categorical_crossentropy")
    x, y1, w = batches[0]
    probe.fit(x, y1, sample_weight=w, batch_size=BATCH_SIZE, verbose=0)  # tracing, not measured
    epoch_s, _ = _timed(lambda: probe.fit(batches, epochs=1, verbose=0))
    windows = RecordingWindows(validation_split, spec)
    probe.predict(windows[0], verbose=0)  # tracing, not measured
    validation_s, _ = _timed(lambda: probe.predict(windows, verbose=0))

    model = build_model("resnet", 12, 2)
    model.compile(optimizer="adam", loss="categorical_crossentropy", jit_compile=False)
    full = max(len(train) // BATCH_SIZE, 1)  # full batches only (a small n has fewer than MODEL_BATCHES + 1)
    sample = [batches[i % full] for i in range(MODEL_BATCHES + 1)]
    model.train_on_batch(*sample[0])  # tracing, not measured
    model_s, _ = _timed(lambda: [model.train_on_batch(*b) for b in sample[1:]])
    return {
        "layout": layout,
        "n": n,
        "train": len(train),
        "validation_windows": len(windows.owners),
        "load_s": load_s,
        "epoch_s": epoch_s,
        "validation_s": validation_s,
        "model_samples_per_s": MODEL_BATCHES * BATCH_SIZE / model_s,
        "workers": batches.workers,
        "peak_rss_mib": _peak_rss_mib(),
    }


def _step(name: str, **arguments) -> dict:
    """Run a step in a process of its own; its JSON answer is the last line it prints."""
    command = [sys.executable, "-m", "bench.training", name, json.dumps(arguments)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench.training {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def streamed(n: int) -> tuple[list[dict], dict, list[dict], str]:
    from ecg_training.cache import CHUNK_RECORDINGS

    folder = tempfile.mkdtemp(prefix="ecg-bench-training-")
    try:
        build = _step("build_cache", n=n, cache_dir=folder)
        tenth = max(CHUNK_RECORDINGS, n // 10 // CHUNK_RECORDINGS * CHUNK_RECORDINGS)  # whole chunks of the cache
        small = _step("worker", n=min(tenth, n), cache_dir=folder, layout="stream")
        stream = _step("worker", n=n, cache_dir=folder, layout="stream")
        memory = _step("worker", n=n, cache_dir=folder, layout="memory")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    rows = [
        {
            "method": "cache build: clean once into the cache (one-off)",
            "samples": n,
            "samples_per_s": n / build["seconds"],
            "peak_rss_mib": build["peak_rss_mib"],
        }
    ]
    for run in (memory, small, stream):
        what = "baseline: every cleaned recording in memory" if run["layout"] == "memory" else "streamed from the cache"
        rows += [
            {
                "method": f"{what}: random crops per epoch (fit, input workers {run['workers']})",
                "samples": run["train"],
                "samples_per_s": run["train"] / run["epoch_s"],
                "peak_rss_mib": run["peak_rss_mib"],
            },
            {
                "method": f"{what}: validation windows (predict)",
                "samples": run["validation_windows"],
                "samples_per_s": run["validation_windows"] / run["validation_s"],
                "peak_rss_mib": None,
            },
            {
                "method": f"{what}: resnet train step (the model's consumption)",
                "samples": MODEL_BATCHES * BATCH_SIZE,
                "samples_per_s": run["model_samples_per_s"],
                "peak_rss_mib": None,
            },
        ]
        if run["layout"] == "memory":
            rows[-3]["method"] += f"; loading them took {run['load_s']:.1f} s"
    input_rate = stream["train"] / stream["epoch_s"]
    rss_ratio = stream["peak_rss_mib"] / small["peak_rss_mib"]
    ratios = {
        f"peak RSS streamed, n / n/10 ({small['n']})": rss_ratio,
        "peak RSS in memory / streamed": memory["peak_rss_mib"] / stream["peak_rss_mib"],
        "streamed input / resnet train step (samples per s)": input_rate / stream["model_samples_per_s"],
    }
    targets = [
        {
            "target": "peak RSS flat in n: streamed worker at n within 20% of n/10",
            "measured": rss_ratio,
            "met": rss_ratio <= 1.2,
        },
        {
            "target": "input >= 5x what the model step consumes",
            "measured": input_rate / stream["model_samples_per_s"],
            "met": input_rate >= 5 * stream["model_samples_per_s"],
        },
    ]
    notes = (
        f"{n} 12-lead PTB-XL recordings: the {build['distinct']} real ones, each used again in turn; the cache "
        f"held {build['bytes'] / 2**30:.2f} GiB and took {build['seconds']:.0f} s to build. Every PTB-XL recording "
        "lasts 10 s, so each crop is the whole recording."
        + (" At this n an epoch is too short for fit's start-up per epoch to vanish from the rate." if n < 5000 else "")
    )
    return rows, ratios, targets, notes


def epochs(families=("cnn", "resnet", "inception")) -> tuple[list[dict], dict]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from ecg_shared.formats import read_ecg
    from ecg_shared.preprocessing import PreprocessingSpec, clean, window_batch
    from ecg_training.families import build_model

    headers = sorted((_data_dir() / "cinc2017").glob("*.hea"))[:EPOCH_SAMPLES]
    if not headers:
        raise RuntimeError(f"CinC 2017 not found in {_data_dir() / 'cinc2017'}: set ECG_DATA_DIR")
    spec = PreprocessingSpec(sampling_rate=150, window_samples=4500, leads=("II",), normalisation="zscore")
    x = np.stack([window_batch(clean(read_ecg(h), spec), spec)[0] for h in headers])
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
                "method": f"one epoch: {family} ({policy}; CinC, lead II, 150 Hz, 30 s)",
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


def run(n: int = 100_000) -> dict:
    stream_rows, stream_ratios, targets, notes = streamed(n)
    epoch_rows, epoch_ratios = epochs()
    return {
        "name": "training",
        "title": "Training: streamed input (12-lead PTB-XL, 100 Hz, 10 s) and one epoch per family",
        "rows": stream_rows + epoch_rows,
        "ratios": {**stream_ratios, **epoch_ratios},
        "targets": targets,
        "notes": notes
        + f" One epoch per family = {EPOCH_SAMPLES} CinC 2017 windows of 4500 samples, batch {BATCH_SIZE}, after a "
        "warm-up batch. Peak RSS: getrusage of each step's own process (TensorFlow and the models included).",
    }


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("build_cache", "worker"):
        step = build_cache if sys.argv[1] == "build_cache" else worker
        print(json.dumps(step(**json.loads(sys.argv[2]))))
    else:
        print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000), indent=2))
