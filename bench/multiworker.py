"""One training job on k workers, simulated on this machine: ``tf.distribute.MultiWorkerMirroredStrategy`` across k
processes on localhost, each reading its shard of every epoch (batches i with i mod k = its rank) from one shared
cache of cleaned recordings (docs/training.md, "Past one machine").

``python -m bench.multiworker [N] [K] [EPOCHS]`` (default 2000 recordings, 2 workers, 2 epochs; ports 17010-17010+K)
builds the cache (PTB-XL 12-lead, 100 Hz, 10 s, each real recording used again in turn) in a temporary folder, runs the
k workers and one worker alone with the same global batch, and prints each one's losses, seconds per epoch and a
checksum of its final weights (equal on every worker when the gradients were all-reduced). Not part of ``make bench``:
on a 2-core machine k processes share the same cores, so it shows the mechanics, not a speed-up.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

GLOBAL_BATCH = 32
FIRST_PORT = 17010


def member(rank: int, k: int, cache_dir: str, n: int, epochs: int) -> dict:
    """One worker of the group: its shard of each epoch's RandomCrops, the model mirrored across the group."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy() if k > 1 else tf.distribute.get_strategy()
    import keras

    from bench.training import _twelve_lead_spec
    from ecg_training.cache import CHUNK_RECORDINGS, CachedSignals, SignalCache
    from ecg_training.data import RandomCrops, Split
    from ecg_training.families import build_model

    spec, cache = _twelve_lead_spec(), SignalCache(cache_dir)
    chunks = [
        cache.open(spec, [(i, f"{i % 790:064d}") for i in range(s, min(s + CHUNK_RECORDINGS, n))])
        for s in range(0, n, CHUNK_RECORDINGS)
    ]
    chunk_of = np.repeat(np.arange(len(chunks)), [len(c.ids) for c in chunks])
    row_of = np.concatenate([np.arange(len(c.ids)) for c in chunks])
    y = (np.arange(n) // 7) % 2
    crops = RandomCrops(
        Split(list(range(n)), CachedSignals(chunks, chunk_of, row_of), y), spec, 2, GLOBAL_BATCH // k, 0
    )
    steps = n // (GLOBAL_BATCH // k) // k  # full batches only, and the same number on every worker
    window, leads = spec.window_samples, len(spec.leads)
    signature = (
        tf.TensorSpec((GLOBAL_BATCH // k, window, leads), tf.float32),
        tf.TensorSpec((GLOBAL_BATCH // k, 2), tf.float32),
        tf.TensorSpec((GLOBAL_BATCH // k,), tf.float32),
    )

    def shard(context: tf.distribute.InputContext) -> tf.data.Dataset:
        def batches():
            for step in range(steps):
                yield crops[step * context.num_input_pipelines + context.input_pipeline_id]

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return tf.data.Dataset.from_generator(batches, output_signature=signature).repeat().with_options(options)

    # A custom step with tf.distribute, not model.fit: Keras 3.15's fit does not run under MultiWorkerMirroredStrategy
    # (its first-batch build and its per-step logs reduce across workers in ways the strategy refuses).
    data = strategy.distribute_datasets_from_function(shard) if k > 1 else shard(tf.distribute.InputContext())
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = build_model("cnn", leads, 2)
        optimizer = keras.optimizers.Adam(1e-3)
        optimizer.build(model.trainable_variables)

    def replica_step(x, y, w):
        with tf.GradientTape() as tape:
            p = model(x, training=True)
            loss = tf.reduce_sum(keras.losses.categorical_crossentropy(y, p) * w) / GLOBAL_BATCH
        grads = tape.gradient(loss, model.trainable_variables)
        # Keras's optimizer sums the gradients across the group (each loss is divided by the global batch)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    @tf.function
    def step(iterator):
        return strategy.reduce("SUM", strategy.run(replica_step, args=next(iterator)), axis=None)

    iterator = iter(data)
    losses, seconds = [], []
    for _ in range(epochs):
        started, total = time.perf_counter(), 0.0
        for _ in range(steps):
            total += float(step(iterator))
        seconds.append(time.perf_counter() - started)
        losses.append(total / steps)
        crops.on_epoch_end()  # the next epoch's order and crops, the same on every worker
    history = {"loss": losses}
    # the trainable weights (batch normalisation's moving statistics are each worker's own)
    weights = float(sum(np.abs(keras.ops.convert_to_numpy(v)).sum() for v in model.trainable_variables))
    return {
        "rank": rank,
        "workers": k,
        "steps_per_epoch": steps,
        "samples_per_epoch": steps * GLOBAL_BATCH,
        "loss": [round(v, 5) for v in history["loss"]],
        "seconds_per_epoch": [round(s, 1) for s in seconds],
        "weights_checksum": round(weights, 4),
    }


def group(k: int, cache_dir: str, n: int, epochs: int, timeout: float = 1200) -> list[dict]:
    """Run k members at once (k = 1: one worker alone) and collect their answers."""
    cluster = [f"127.0.0.1:{FIRST_PORT + i}" for i in range(k)]
    processes = []
    for rank in range(k):
        config = {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": rank}}
        env = {**os.environ, "TF_CONFIG": json.dumps(config)} if k > 1 else dict(os.environ)
        arguments = json.dumps({"rank": rank, "k": k, "cache_dir": cache_dir, "n": n, "epochs": epochs})
        command = [sys.executable, "-m", "bench.multiworker", "member", arguments]
        processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    answers = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=timeout)
            if process.returncode != 0:
                raise RuntimeError(f"worker failed:\n{err[-5000:]}")
            answers.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for process in processes:  # one failed or hung: the others would wait for it for ever
            if process.poll() is None:
                process.kill()
                process.wait()
    return answers


def run(n: int = 2000, k: int = 2, epochs: int = 2) -> dict:
    from bench.training import build_cache

    folder = tempfile.mkdtemp(prefix="ecg-bench-multiworker-")
    try:
        build = build_cache(n, folder)
        started = time.perf_counter()
        together = group(k, folder, n, epochs)
        together_s = time.perf_counter() - started
        started = time.perf_counter()
        alone = group(1, folder, n, epochs)
        alone_s = time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    checksums = {a["weights_checksum"] for a in together}  # trainable weights: equal when in sync
    return {
        "recordings": n,
        "cache_build_s": round(build["seconds"], 1),
        "group": together,
        "group_wall_s": round(together_s, 1),
        "alone": alone,
        "alone_wall_s": round(alone_s, 1),
        "workers_in_sync": len(checksums) == 1,
    }


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "member":
        print(json.dumps(member(**json.loads(sys.argv[2]))))
    else:
        print(json.dumps(run(*(int(a) for a in sys.argv[1:4])), indent=2))
