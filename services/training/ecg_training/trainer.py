"""One training run: fit a model family on :class:`TrainingData`, keep the best epoch by validation score, evaluate
on the test split the way inference will, export to ONNX and check parity, and write the model card."""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import keras
import numpy as np

from ecg_shared.drift import bucket_counts
from ecg_shared.jobs.training import EpochProgress, TrainingJobRequest
from ecg_shared.model_metadata import ModelMetadata
from ecg_training.checkpoint import Checkpoint
from ecg_training.data import RandomCrops, Split, TrainingData, mean_by_recording, recording_windows
from ecg_training.evaluation import choose_threshold, evaluate, primary_metric
from ecg_training.export import check_parity, to_onnx
from ecg_training.families import build_model, float32_copy

log = logging.getLogger(__name__)
PARITY_SAMPLES = 32


class TrainingCancelled(Exception):
    pass


@dataclass
class TrainedModel:
    metadata: ModelMetadata
    onnx_bytes: bytes
    metrics: dict  # test split, plus validation and parity figures
    model_card: dict
    keras_model: keras.Model  # float32, fixed window (the exported network)


@dataclass
class TrainingHooks:
    """How a run reports, is stopped and resumed: called at epoch ends / polled at batch ends."""

    on_epoch: Callable[[EpochProgress], None] | None = None
    on_batch: Callable[[int, int], None] | None = None  # (batch index within epoch, batches per epoch)
    cancelled: threading.Event | None = None
    on_checkpoint: Callable[[Checkpoint], None] | None = None  # after each epoch, before on_epoch
    resume_from: Checkpoint | None = None  # go on from this checkpoint's epoch
    attempt: int = 1  # recorded in each epoch's progress


def predict_recordings(model: keras.Model, split: Split, data: TrainingData, batch_size: int = 64) -> np.ndarray:
    """Per-recording class probabilities: the mean over each recording's inference windows."""
    windows, owners = recording_windows(split, data.spec)
    probabilities = model.predict(windows, batch_size=batch_size, verbose=0)
    return mean_by_recording(np.asarray(probabilities, dtype=np.float64), owners, len(split))


class _Monitor(keras.callbacks.Callback):
    """Validation scoring, best-weights tracking, progress reporting and cancellation."""

    def __init__(
        self, data: TrainingData, request: TrainingJobRequest, hooks: TrainingHooks, batches: RandomCrops
    ) -> None:
        super().__init__()
        self.data, self.request, self.hooks, self.batches = data, request, hooks, batches
        self.steps = len(batches)
        self.best_score, self.best_weights, self.best_epoch = -np.inf, None, 0
        self.history: list[EpochProgress] = []
        self.started = time.monotonic()

    def resume(self, checkpoint: Checkpoint) -> None:
        """Restore the model, the optimizer, the best-so-far and the crops of ``checkpoint``."""
        self.model.set_weights(checkpoint.weights)
        optimizer = self.model.optimizer
        optimizer.build(self.model.trainable_variables)
        if len(optimizer.variables) != len(checkpoint.optimizer):
            raise ValueError("the checkpoint's optimizer state does not fit this model")
        for variable, value in zip(optimizer.variables, checkpoint.optimizer, strict=True):
            variable.assign(value)
        self.best_score, self.best_epoch = checkpoint.best_score, checkpoint.best_epoch
        self.best_weights = checkpoint.best_weights
        self.history = list(checkpoint.history)
        self.batches.restore(checkpoint.crops)

    def checkpoint(self, epochs_done: int) -> Checkpoint:
        return Checkpoint(
            epoch=epochs_done,
            weights=self.model.get_weights(),
            optimizer=[keras.ops.convert_to_numpy(v) for v in self.model.optimizer.variables],
            best_score=float(self.best_score),
            best_epoch=self.best_epoch,
            best_weights=self.best_weights,
            history=list(self.history),
            crops=self.batches.state(),
            fingerprint=self.data.fingerprint,
        )

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if self.hooks.on_batch:
            self.hooks.on_batch(batch + 1, self.steps)
        if self.hooks.cancelled is not None and self.hooks.cancelled.is_set():
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.hooks.cancelled is not None and self.hooks.cancelled.is_set():
            return
        request, data = self.request, self.data
        probabilities = predict_recordings(self.model, data.validation, data)
        metrics = evaluate(
            probabilities,
            data.validation.y,
            data.classes,
            request.normal_classes,
            request.unreadable_classes,
            threshold=0.5,
        )
        name, score = primary_metric(metrics, len(data.classes))
        validation = {name: score, "accuracy": metrics["accuracy"], "macro_f1": metrics["macro"]["f1"]}
        if metrics["normal_vs_abnormal"]["auc"] is not None:
            validation["auc_abnormal"] = metrics["normal_vs_abnormal"]["auc"]
        if score > self.best_score:
            self.best_score, self.best_weights, self.best_epoch = score, self.model.get_weights(), epoch + 1
        progress = EpochProgress(
            epoch=epoch + 1,
            loss=float((logs or {}).get("loss", float("nan"))),
            seconds=round(time.monotonic() - self.started, 2),
            validation={k: round(float(v), 5) for k, v in validation.items()},
            attempt=self.hooks.attempt,
        )
        self.history.append(progress)
        if self.hooks.on_checkpoint:
            self.hooks.on_checkpoint(self.checkpoint(epoch + 1))
        log.info(
            "epoch %d/%d loss %.4f validation %s", progress.epoch, request.epochs, progress.loss, progress.validation
        )
        if self.hooks.on_epoch:
            self.hooks.on_epoch(progress)


def fit(data: TrainingData, request: TrainingJobRequest, hooks: TrainingHooks) -> tuple[keras.Model, _Monitor]:
    """Train ``request.family`` on random crops (from ``hooks.resume_from`` on, if given); returns the model holding
    its best epoch's weights."""
    keras.utils.set_random_seed(request.seed)
    n_leads, n_classes = len(data.spec.leads), len(data.classes)
    model = build_model(request.family, n_leads, n_classes, mixed_precision=request.mixed_precision)
    batches = RandomCrops(data.train, data.spec, n_classes, request.batch_size, request.seed)
    schedule = keras.optimizers.schedules.CosineDecay(
        request.learning_rate, decay_steps=request.epochs * len(batches), alpha=0.05
    )
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="categorical_crossentropy", jit_compile=False)
    monitor = _Monitor(data, request, hooks, batches)
    monitor.set_model(model)
    first_epoch = 0
    if hooks.resume_from is not None:
        monitor.resume(hooks.resume_from)
        first_epoch = hooks.resume_from.epoch
    model.fit(batches, epochs=request.epochs, initial_epoch=first_epoch, callbacks=[monitor], verbose=0)
    if hooks.cancelled is not None and hooks.cancelled.is_set():
        raise TrainingCancelled("cancelled during training")
    if monitor.best_weights is not None:
        model.set_weights(monitor.best_weights)
    return model, monitor


def train_and_export(
    data: TrainingData, request: TrainingJobRequest, hooks: TrainingHooks | None = None, job_id: int | None = None
) -> TrainedModel:
    """The whole run up to (not including) registration."""
    hooks = hooks or TrainingHooks()
    started = time.monotonic()
    model, monitor = fit(data, request, hooks)
    training_seconds = time.monotonic() - started
    n_leads, n_classes = len(data.spec.leads), len(data.classes)
    exported = float32_copy(model, request.family, n_leads, n_classes, data.spec.window_samples)

    validation_probabilities = predict_recordings(exported, data.validation, data)
    threshold = choose_threshold(
        validation_probabilities, data.validation.y, data.classes, request.normal_classes, request.unreadable_classes
    )
    validation = evaluate(
        validation_probabilities,
        data.validation.y,
        data.classes,
        request.normal_classes,
        request.unreadable_classes,
        threshold,
    )
    test = evaluate(
        predict_recordings(exported, data.test, data),
        data.test.y,
        data.classes,
        request.normal_classes,
        request.unreadable_classes,
        threshold,
    )
    metric_name, metric_value = primary_metric(test, n_classes)

    metadata = ModelMetadata(
        name=request.model_name,
        family=request.family,
        classes=list(data.classes),
        normal_classes=list(request.normal_classes),
        preprocessing=data.spec,
        unreadable_classes=list(request.unreadable_classes),
        threshold=round(threshold, 6),
        training_job_id=job_id,
        dataset_fingerprint=data.fingerprint,
        extra={
            "dataset": request.dataset,
            "abnormal_score": "sum of the abnormal classes' probabilities",
            "window_combination": "mean of window probabilities",
            "created_at": datetime.now(UTC).isoformat(),
        },
    )
    abnormal = [i for i, name in enumerate(data.classes) if name in metadata.abnormal_classes]
    # The reference for drift monitoring: how p_abnormal is distributed on the validation split (ecg_shared.drift).
    validation["p_abnormal_histogram"] = bucket_counts(validation_probabilities[:, abnormal].sum(axis=1))
    if hooks.cancelled is not None and hooks.cancelled.is_set():
        raise TrainingCancelled("cancelled during evaluation")
    onnx_bytes = to_onnx(exported, metadata)
    held_back = _parity_inputs(data)
    parity = check_parity(exported, onnx_bytes, held_back)
    metrics = {
        "primary": {"name": metric_name, "value": metric_value},
        "test": test,
        "validation": validation,
        "best_epoch": monitor.best_epoch,
        "parity_max_abs_diff": parity,
        "parity_samples": len(held_back),
        "training_seconds": round(training_seconds, 1),
    }
    card = model_card(request, data, metadata, metrics, monitor.history, exported.count_params())
    return TrainedModel(metadata, onnx_bytes, metrics, card, exported)


def _parity_inputs(data: TrainingData) -> np.ndarray:
    """Held-back windows (test split) plus a few random ones, for the Keras/onnxruntime comparison."""
    windows, _ = recording_windows(data.test, data.spec)
    rng = np.random.default_rng(0)
    picked = windows[rng.choice(len(windows), min(PARITY_SAMPLES, len(windows)), replace=False)]
    noise = rng.standard_normal((4, *windows.shape[1:])).astype(np.float32)
    return np.concatenate([picked, noise])


def model_card(
    request: TrainingJobRequest,
    data: TrainingData,
    metadata: ModelMetadata,
    metrics: dict,
    history: list,
    n_parameters: int,
) -> dict:
    import onnx
    import onnxruntime
    import tensorflow as tf

    readable = [c for c in data.classes if c not in request.unreadable_classes]
    unreadable = f"; unreadable = {', '.join(request.unreadable_classes)}" if request.unreadable_classes else ""
    return {
        "name": metadata.name,
        "family": request.family,
        "summary": (
            f"{request.family} classifier of {len(data.spec.leads)}-lead ECG ({', '.join(data.spec.leads)}) "
            f"into {', '.join(data.classes)}; normal = {', '.join(request.normal_classes)}" + unreadable
        ),
        "data": {
            "dataset": request.dataset,
            "filters": request.filters.model_dump(),
            "label_mapping": request.label_mapping,
            **data.summary(),
            "split": (
                f"by recording, stratified by class, seed {request.seed}: "
                f"{1 - request.validation_fraction - request.test_fraction:.0%} train, "
                f"{request.validation_fraction:.0%} validation, {request.test_fraction:.0%} test"
            ),
        },
        "classes": data.classes,
        "normal_classes": request.normal_classes,
        "unreadable_classes": request.unreadable_classes,
        "preprocessing": metadata.to_dict()["preprocessing"],
        "hyperparameters": {
            k: getattr(request, k)
            for k in (
                "family",
                "epochs",
                "batch_size",
                "learning_rate",
                "window_s",
                "sampling_rate",
                "seed",
                "mixed_precision",
            )
        }
        | {
            "optimizer": "Adam, cosine decay to 5%",
            "loss": "categorical cross-entropy, balanced class weights",
            "augmentation": "one random window crop per recording and epoch",
            "parameters": n_parameters,
            "epoch_selection": f"best validation {metrics['primary']['name']} (epoch {metrics['best_epoch']})",
        },
        "metrics": {
            "split": "test (held out, never used for training or selection)",
            "primary": metrics["primary"],
            "test": metrics["test"],
            "validation": metrics["validation"],
            "threshold": {
                "value": metadata.threshold,
                "chosen_on": "validation split, maximising sensitivity + specificity",
            },
            "mean_f1_readable_means": f"mean F1 over {', '.join(readable)}"
            + (" (the CinC 2017 challenge score)" if set(readable) == {"N", "A", "O"} else ""),
        },
        "history": [h.model_dump() for h in history],
        "export": {
            "format": "ONNX",
            "opset": 17,
            "input": "ecg (batch, window, leads) float32",
            "output": "probabilities (batch, classes) float32",
            "parity_max_abs_diff": metrics["parity_max_abs_diff"],
            "parity_samples": metrics["parity_samples"],
        },
        "intended_use": (
            "Decision support and triage research: flags recordings for review by a clinician. Probabilities are "
            "per recording, the mean over non-overlapping windows. Not a medical device; not for diagnosis."
        ),
        "limitations": [
            f"Trained on {request.dataset} only ({sum(len(s) for s in data.splits().values())} recordings); "
            "performance on other devices, populations and lead placements is unknown until measured.",
            f"Expects the preprocessing stored in the ONNX metadata: leads {', '.join(data.spec.leads)}, resampled "
            f"to {data.spec.sampling_rate:g} Hz, {data.spec.window_s:g} s windows, {data.spec.normalisation} "
            "normalisation per window.",
            "Metrics come from one held-out split of the data set; small classes have wide confidence intervals.",
        ],
        "training": {
            "job_id": metadata.training_job_id,
            "seconds": metrics["training_seconds"],
            "host": platform.node(),
            "created_at": metadata.extra.get("created_at"),
        },
        "software": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    }
