"""One training run: fit a model family on :class:`TrainingData`, keep the best epoch by validation score, fuse it
with beat features where asked (:mod:`ecg_training.fusion`), calibrate and choose the operating threshold on the
validation split, evaluate on the test split the way inference will (with intervals), export to ONNX and check
parity, and write the model card."""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import keras
import numpy as np

from ecg_shared.calibration import calibrate
from ecg_shared.drift import bucket_counts
from ecg_shared.evaluation import (
    evaluate,
    primary_metric,
    subgroup_figures,
    threshold_for_sensitivity,
    with_intervals,
)
from ecg_shared.jobs.training import EpochProgress, TrainingJobRequest
from ecg_shared.machine import cpu_model
from ecg_shared.model_metadata import FEATURES_INPUT_NAME, INPUT_NAME, ModelMetadata
from ecg_training.calibration import calibration_report, fit_temperature
from ecg_training.checkpoint import Checkpoint
from ecg_training.data import RandomCrops, RecordingWindows, Split, TrainingData, feature_spec, mean_by_recording
from ecg_training.export import averaged_onnx, check_parity, finish_onnx, network_onnx
from ecg_training.families import build_model, encoder_weights, float32_copy, load_encoder
from ecg_training.fusion import (
    FeatureModel,
    choose_blend_weight,
    feature_reference,
    fit_feature_model,
    fused_onnx,
)

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


def predict_recordings(model: keras.Model, split: Split, data: TrainingData) -> np.ndarray:
    """Per-recording class probabilities of the network: the mean over each recording's inference windows
    (streamed from the cache in batches of 64 windows)."""
    windows = RecordingWindows(split, data.spec)
    probabilities = model.predict(windows, verbose=0)
    return mean_by_recording(np.asarray(probabilities, dtype=np.float64), windows.owners, len(split))


@dataclass
class ExportedModel:
    """What the ONNX graph computes, window by window, before calibration: the network (the mean of an ensemble's
    networks), blended with the feature model where there is one (``weight`` is the network's share)."""

    networks: list[keras.Model]
    feature_model: FeatureModel | None = None
    weight: float = 1.0

    def predict_windows(self, windows: np.ndarray, features: np.ndarray | None) -> np.ndarray:
        network = np.mean(
            [np.asarray(n.predict(windows, batch_size=64, verbose=0), dtype=np.float64) for n in self.networks], axis=0
        )
        if self.feature_model is None:
            return network
        return self.weight * network + (1 - self.weight) * self.feature_model.predict(features)

    def predict_recordings(self, network_probabilities: np.ndarray, split: Split) -> np.ndarray:
        """Per-recording probabilities from the network's per-recording ones (the blend is linear, so blending the
        window mean equals the mean of the blended windows)."""
        if self.feature_model is None:
            return network_probabilities
        return self.weight * network_probabilities + (1 - self.weight) * self.feature_model.predict(split.features)


class _Monitor(keras.callbacks.Callback):
    """Validation scoring, best-weights tracking, progress reporting and cancellation."""

    def __init__(
        self,
        data: TrainingData,
        request: TrainingJobRequest,
        hooks: TrainingHooks,
        batches: RandomCrops,
        member: int = 0,
        finished: list[list[np.ndarray]] | None = None,
        history: list[EpochProgress] | None = None,
    ) -> None:
        super().__init__()
        self.data, self.request, self.hooks, self.batches = data, request, hooks, batches
        self.steps = len(batches)
        self.member = member  # which network of an ensemble this is (its epochs follow the earlier members')
        self.epoch_offset = member * request.epochs
        self.finished = finished or []  # the best weights of the ensemble's earlier members, for the checkpoint
        self.best_score, self.best_weights, self.best_epoch = -np.inf, None, 0
        self.metric_name = ""  # what best_score is (primary_metric's name), known after the first epoch
        self.history: list[EpochProgress] = list(history or [])  # the ensemble's earlier members' epochs too
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
        self.batches.restore(checkpoint.crops, checkpoint.epoch)

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
            member=self.member,
            finished=self.finished,
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
        self.metric_name = name
        validation = {name: score, "accuracy": metrics["accuracy"], "macro_f1": metrics["macro"]["f1"]}
        if metrics["normal_vs_abnormal"]["auc"] is not None:
            validation["auc_abnormal"] = metrics["normal_vs_abnormal"]["auc"]
        if score > self.best_score:
            self.best_score, self.best_weights, self.best_epoch = score, self.model.get_weights(), epoch + 1
        progress = EpochProgress(
            epoch=self.epoch_offset + epoch + 1,
            loss=float((logs or {}).get("loss", float("nan"))),
            seconds=round(time.monotonic() - self.started, 2),
            validation={k: round(float(v), 5) for k, v in validation.items()},
            attempt=self.hooks.attempt,
        )
        self.history.append(progress)
        if self.hooks.on_checkpoint:
            self.hooks.on_checkpoint(self.checkpoint(epoch + 1))
        log.info(
            "epoch %d/%d loss %.4f validation %s",
            progress.epoch,
            request.epochs * request.ensemble,
            progress.loss,
            progress.validation,
        )
        if self.hooks.on_epoch:
            self.hooks.on_epoch(progress)


def fit(
    data: TrainingData,
    request: TrainingJobRequest,
    hooks: TrainingHooks,
    member: int = 0,
    finished: list[list[np.ndarray]] | None = None,
    history: list[EpochProgress] | None = None,
    resume_from: Checkpoint | None = None,
    encoder: list[np.ndarray] | None = None,
) -> tuple[keras.Model, _Monitor]:
    """Train ``request.family`` on random crops (member ``member`` of an ensemble: seed ``request.seed + member``;
    from ``resume_from`` on, if given; a leadwise model's encoder starting from ``encoder``, if given); returns the
    model holding its best epoch's weights. ``finished`` and ``history``: the earlier members' best weights and
    epochs, which its checkpoints carry along."""
    seed = request.seed + member
    keras.utils.set_random_seed(seed)
    n_leads, n_classes = len(data.spec.leads), len(data.classes)
    model = build_model(
        request.family, n_leads, n_classes, data.spec.window_samples, mixed_precision=request.mixed_precision
    )
    if encoder is not None:
        load_encoder(model, encoder)
    batches = RandomCrops(
        data.train, data.spec, n_classes, request.batch_size, seed, request.augment, request.short_crops
    )
    schedule = keras.optimizers.schedules.CosineDecay(
        request.learning_rate, decay_steps=request.epochs * len(batches), alpha=0.05
    )
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="categorical_crossentropy", jit_compile=False)
    monitor = _Monitor(data, request, hooks, batches, member, finished, history)
    monitor.set_model(model)
    first_epoch = 0
    if resume_from is not None:
        monitor.resume(resume_from)
        first_epoch = resume_from.epoch
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
    models, finished, history, first = _resumed_members(data, request, hooks.resume_from)
    monitor, encoder, pretraining = None, None, None
    for member in range(first, request.ensemble):
        resume = hooks.resume_from if member == first and hooks.resume_from is not None else None
        if resume is not None and resume.member != member:
            resume = None  # the checkpoint was taken between members: the next one starts afresh
        if request.pretrain is not None and resume is None and encoder is None:
            encoder, pretraining = pretrain_encoder(data, request, hooks)
        model, monitor = fit(data, request, hooks, member, finished, history, resume, encoder)
        models.append(model)
        finished = [*finished, model.get_weights()]
        history = monitor.history
    training_seconds = time.monotonic() - started
    n_leads, n_classes = len(data.spec.leads), len(data.classes)
    networks = [float32_copy(model, request.family, n_leads, n_classes, data.spec.window_samples) for model in models]
    classes, normal, unreadable = data.classes, request.normal_classes, request.unreadable_classes
    network_validation = np.mean([predict_recordings(n, data.validation, data) for n in networks], axis=0)
    network_test = np.mean([predict_recordings(n, data.test, data) for n in networks], axis=0)

    def validation_score(probabilities: np.ndarray) -> float:
        return primary_metric(evaluate(probabilities, data.validation.y, classes, normal, unreadable, 0.5), n_classes)[
            1
        ]

    exported, fusion = ExportedModel(networks), None
    features = feature_spec(request)
    if features is not None:
        feature_model = fit_feature_model(data.train.features, data.train.y, n_classes, request.seed)
        weight, scores = choose_blend_weight(
            network_validation, feature_model.predict(data.validation.features), validation_score
        )
        exported = ExportedModel(networks, feature_model, weight)
        fusion = {
            "features": features.names,
            "feature_model": f"gradient-boosted trees ({feature_model.model.n_estimators_} trees per class, depth 3)",
            "network_weight": weight,
            "validation_by_network_weight": {f"{w:.1f}": round(v, 4) for w, v in scores.items()},
        }

    raw_validation = exported.predict_recordings(network_validation, data.validation)
    raw_test = exported.predict_recordings(network_test, data.test)
    calibration = fit_temperature(raw_validation, data.validation.y)
    validation_probabilities = calibrate(raw_validation, calibration)
    test_probabilities = calibrate(raw_test, calibration)
    threshold = threshold_for_sensitivity(
        validation_probabilities, data.validation.y, classes, normal, unreadable, request.operating_sensitivity
    )
    validation = evaluate(validation_probabilities, data.validation.y, classes, normal, unreadable, threshold)
    test = evaluate(test_probabilities, data.test.y, classes, normal, unreadable, threshold)
    metric_name, metric_value = primary_metric(test, n_classes)
    abnormal_columns = [classes.index(c) for c in classes if c not in normal and c not in unreadable]
    readable_test = np.array([classes[i] not in unreadable for i in data.test.y], dtype=bool)
    evaluation = {
        "split": "test",
        "n": len(data.test),
        "figures": with_intervals(test_probabilities, data.test.y, classes, normal, unreadable, threshold),
        "confusion_matrix": test["confusion_matrix"],
        "calibration": {
            "method": calibration["method"],
            "temperature": calibration["temperature"],
            "fitted_on": "validation",
            **calibration_report(raw_test, test_probabilities, data.test.y, classes, abnormal_columns, readable_test),
        },
        "subgroups": subgroup_figures(
            test_probabilities, data.test.y, data.test.info, classes, normal, unreadable, threshold
        ),
        "operating_point": {
            "threshold": round(threshold, 6),
            "goal": f"sensitivity for abnormal >= {request.operating_sensitivity:.2f} on the validation split",
            "validation_sensitivity": validation["normal_vs_abnormal"]["sensitivity"],
            "validation_specificity": validation["normal_vs_abnormal"]["specificity"],
        },
        "validation": {
            "network_alone": round(validation_score(network_validation), 4),
            "exported": round(validation_score(raw_validation), 4),
            "metric": primary_metric(validation, n_classes)[0],
        },
    }
    readable_train = np.array([classes[i] not in unreadable for i in data.train.y], dtype=bool)
    prevalence = float(np.isin(data.train.y, abnormal_columns)[readable_train].mean()) if readable_train.any() else None

    metadata = ModelMetadata(
        name=request.model_name,
        family=request.family,
        classes=list(classes),
        normal_classes=list(normal),
        preprocessing=data.spec,
        unreadable_classes=list(unreadable),
        threshold=round(threshold, 6),
        training_job_id=job_id,
        dataset_fingerprint=data.fingerprint,
        features=None if features is None else features.to_dict(),
        calibration=calibration,
        abnormal_prevalence=None if prevalence is None else round(prevalence, 6),
        network_weight=None if exported.feature_model is None else float(exported.weight),
        feature_reference=None
        if features is None
        else feature_reference(data.train.features, data.train.y, [classes.index(c) for c in normal]),
        extra={
            "dataset": request.dataset,
            "abnormal_score": "sum of the abnormal classes' calibrated probabilities",
            "window_combination": "mean of window probabilities, then calibration",
            "created_at": datetime.now(UTC).isoformat(),
        },
    )
    abnormal = [i for i, name in enumerate(data.classes) if name in metadata.abnormal_classes]
    # The reference for drift monitoring: how p_abnormal is distributed on the validation split (ecg_shared.drift).
    validation["p_abnormal_histogram"] = bucket_counts(validation_probabilities[:, abnormal].sum(axis=1))
    if hooks.cancelled is not None and hooks.cancelled.is_set():
        raise TrainingCancelled("cancelled during evaluation")
    protos = [network_onnx(network, data.spec) for network in networks]
    proto = protos[0] if len(protos) == 1 else averaged_onnx(protos)
    if exported.feature_model is not None:
        proto = fused_onnx(proto.SerializeToString(), exported.feature_model, exported.weight, len(features.names))
    onnx_bytes = finish_onnx(proto, metadata)
    feeds = _parity_inputs(data, features is not None)
    parity = check_parity(
        exported.predict_windows(feeds[INPUT_NAME], feeds.get(FEATURES_INPUT_NAME)), onnx_bytes, feeds
    )
    best_epochs = _best_epochs(history, request, metric_name)
    metrics = {
        "primary": {"name": metric_name, "value": metric_value},
        "test": test,
        "validation": validation,
        "best_epoch": best_epochs[0],
        "best_epochs": best_epochs,
        "parity_max_abs_diff": parity,
        "parity_samples": len(feeds[INPUT_NAME]),
        "training_seconds": round(training_seconds, 1),
    }
    card = model_card(request, data, metadata, metrics, history, sum(n.count_params() for n in networks))
    card["evaluation"] = evaluation
    if fusion is not None:
        card["fusion"] = fusion
    if pretraining is not None:
        card["pretraining"] = pretraining
    return TrainedModel(metadata, onnx_bytes, metrics, card, networks[0])


def pretrain_encoder(
    data: TrainingData, request: TrainingJobRequest, hooks: TrainingHooks
) -> tuple[list[np.ndarray], dict]:
    """Train a one-lead ``leadwise`` model on the pretraining dataset (its best validation epoch kept) and return its
    encoder's weights, with what the model card says about it. Not checkpointed: an attempt that resumes from a
    checkpoint has the encoder in its weights already; one that restarts pretrains again."""
    pretraining, pre_request = data.pretraining, request.pretraining_request()
    if pretraining is None:
        raise ValueError("the request asks for pretraining but no pretraining data was loaded")
    started = time.monotonic()
    log.info("pretraining the lead encoder on %s (%d epochs)", pre_request.dataset, pre_request.epochs)
    # Its batches move the progress bar; its epochs are not the job's (the job's epoch count starts after it).
    model, monitor = fit(pretraining, pre_request, TrainingHooks(cancelled=hooks.cancelled, on_batch=hooks.on_batch))
    summary = {
        "dataset": pre_request.dataset,
        "lead": pre_request.leads[0],
        "classes": pretraining.classes,
        "recordings": {"train": len(pretraining.train), "validation": len(pretraining.validation)},
        "epochs": pre_request.epochs,
        "best_epoch": monitor.best_epoch,
        "validation": {monitor.metric_name: round(float(monitor.best_score), 4)},
        "fingerprint": pretraining.fingerprint,
        "seconds": round(time.monotonic() - started, 1),
        "what": "the single-lead encoder, trained on this dataset's training split before the job's own data; "
        "then every layer is trained on the job's data",
    }
    return encoder_weights(model), summary


def _resumed_members(
    data: TrainingData, request: TrainingJobRequest, checkpoint: Checkpoint | None
) -> tuple[list[keras.Model], list[list[np.ndarray]], list[EpochProgress], int]:
    """From a checkpoint: the ensemble's members finished before it (rebuilt with their best weights), their
    weights, the epochs so far, and the member to go on with; without one, nothing done and member 0."""
    if checkpoint is None:
        return [], [], [], 0
    models = []
    for weights in checkpoint.finished:
        model = build_model(request.family, len(data.spec.leads), len(data.classes), data.spec.window_samples)
        model.set_weights(weights)
        models.append(model)
    return models, list(checkpoint.finished), list(checkpoint.history), checkpoint.member


def _best_epochs(history: list[EpochProgress], request: TrainingJobRequest, metric: str) -> list[int]:
    """Each member's best epoch (counted within the member) by its validation ``metric``."""
    best = []
    for member in range(request.ensemble):
        own = [p for p in history if member * request.epochs < p.epoch <= (member + 1) * request.epochs]
        top = max(own, key=lambda p: p.validation.get(metric, -np.inf), default=None)
        best.append(0 if top is None else top.epoch - member * request.epochs)
    return best


def _parity_inputs(data: TrainingData, with_features: bool) -> dict[str, np.ndarray]:
    """Held-back windows (test split) plus a few random ones, and their recordings' features where the model takes
    them (the random windows get a test recording's), for the Keras/onnxruntime comparison."""
    windows = RecordingWindows(data.test, data.spec)
    rng = np.random.default_rng(0)
    picked = rng.choice(len(windows.owners), min(PARITY_SAMPLES, len(windows.owners)), replace=False)
    noise = rng.standard_normal((4, data.spec.window_samples, len(data.spec.leads))).astype(np.float32)
    feeds = {INPUT_NAME: np.concatenate([windows.windows(picked), noise])}
    if with_features:
        rows = np.concatenate([windows.owners[picked], rng.integers(0, len(data.test), 4)])
        feeds[FEATURES_INPUT_NAME] = data.test.features[rows].astype(np.float32)
    return feeds


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
    import scipy
    import sklearn
    import tensorflow as tf

    readable = [c for c in data.classes if c not in request.unreadable_classes]
    requested = request.model_dump()
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
            "extra_datasets": request.extra_datasets,
            "filters": request.filters.model_dump(),
            "label_mapping": request.label_mapping,
            **data.summary(),
            "split": (
                f"by recording, stratified by class, seed {request.data_seed}: "
                f"{1 - request.validation_fraction - request.test_fraction:.0%} train, "
                f"{request.validation_fraction:.0%} validation, {request.test_fraction:.0%} test"
            ),
        },
        "classes": data.classes,
        "normal_classes": request.normal_classes,
        "unreadable_classes": request.unreadable_classes,
        "preprocessing": metadata.to_dict()["preprocessing"],
        "hyperparameters": {
            k: requested[k]
            for k in (
                "family",
                "epochs",
                "batch_size",
                "learning_rate",
                "window_s",
                "sampling_rate",
                "seed",
                "split_seed",
                "mixed_precision",
                "augment",
                "operating_sensitivity",
                "ensemble",
                "pretrain",
            )
        }
        | ({"short_crops": request.short_crops} if request.short_crops else {})  # cards before it lack the key
        | {
            "optimizer": "Adam, cosine decay to 5%",
            "loss": "categorical cross-entropy, balanced class weights",
            "augmentation": "one random window crop per recording and epoch"
            + (
                "; gain 0.8-1.2 per lead, baseline wander, white noise, lead dropout (12 leads)"
                if request.augment
                else ""
            )
            + (f"; {request.short_crops:.0%} of crops cut to 10 s, zero-padded" if request.short_crops else ""),
            "features": request.features,
            "parameters": n_parameters,
            "epoch_selection": f"best validation {metrics['primary']['name']} (epoch "
            + ", ".join(str(e) for e in metrics["best_epochs"])
            + (
                f" of the {request.ensemble} networks, seeds {request.seed}-{request.seed + request.ensemble - 1})"
                if request.ensemble > 1
                else ")"
            ),
        },
        "metrics": {
            "split": "test (held out, never used for training or selection)",
            "primary": metrics["primary"],
            "test": metrics["test"],
            "validation": metrics["validation"],
            "threshold": {
                "value": metadata.threshold,
                "chosen_on": f"validation split: the highest threshold whose sensitivity for abnormal is at least "
                f"{request.operating_sensitivity:.2f}",
            },
            "calibration": metadata.calibration,
            "mean_f1_readable_means": f"mean F1 over {', '.join(readable)}"
            + (" (the CinC 2017 challenge score)" if set(readable) == {"N", "A", "O"} else ""),
        },
        "history": [h.model_dump() for h in history],
        "export": {
            "format": "ONNX",
            "opset": 17,
            "input": "ecg (batch, window, leads) float32"
            + (", features (batch, n_features) float32: ecg_shared.beats" if metadata.features else ""),
            "output": "probabilities (batch, classes) float32, before calibration (ecg_shared.calibration)",
            "parity_max_abs_diff": metrics["parity_max_abs_diff"],
            "parity_samples": metrics["parity_samples"],
        },
        "intended_use": (
            "Decision support and triage research: flags recordings for review by a clinician. Probabilities are "
            "per recording (the mean over non-overlapping windows), calibrated on the validation split, so among "
            "recordings like the training data a probability of 0.7 is right about 70% of the time. The abnormal "
            "call's threshold is set for a stated sensitivity (the operating point below): it is meant to miss few "
            "abnormal recordings at the cost of false alarms. Not a medical device; not for diagnosis."
        ),
        "limitations": [
            f"Trained on {' + '.join(request.datasets)} only "
            f"({sum(len(s) for s in data.splits().values())} recordings); "
            "performance on other devices, populations and lead placements is unknown until measured.",
            f"Expects the preprocessing stored in the ONNX metadata: leads {', '.join(data.spec.leads)}, resampled "
            f"to {data.spec.sampling_rate:g} Hz, {data.spec.window_s:g} s windows, {data.spec.normalisation} "
            "normalisation per window.",
            "Metrics come from one held-out split of the data set; small classes have wide confidence intervals, "
            "and the calibration error of a small split is dominated by chance (see ece_if_perfectly_calibrated).",
            "Calibration holds for recordings like the training data; on another device or population the "
            "probabilities may be over- or under-confident until re-measured.",
        ]
        + (
            [
                "Beat features need at least four detected beats; on shorter or very noisy recordings the features "
                "are marked invalid and the network carries the decision."
            ]
            if metadata.features
            else []
        ),
        "training": {
            "job_id": metadata.training_job_id,
            "seconds": metrics["training_seconds"],
            "host": platform.node(),
            "created_at": metadata.extra.get("created_at"),
            # the same recipe gives another network on another processor (docs/training.md, "The cache of ...")
            "hardware": training_hardware(),
        },
        "software": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
        },
    }


def training_hardware() -> dict:
    """What the model was trained on: the processor (its name, cores, the instruction sets numpy dispatches to,
    which with oneDNN's choice by instruction set decide the rounding) and TensorFlow's GPUs."""
    import tensorflow as tf

    try:
        instruction_sets = list(np.show_config(mode="dicts")["SIMD Extensions"]["found"])
    except (KeyError, TypeError):
        instruction_sets = []
    gpus = [device.name for device in tf.config.list_physical_devices("GPU")]
    return {
        "processor": cpu_model() or platform.machine(),
        "cores": os.cpu_count(),
        "numpy_dispatch": instruction_sets,
        "gpus": gpus,
    }
