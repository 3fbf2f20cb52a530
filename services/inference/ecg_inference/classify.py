"""Classification of one recording, in three steps that the service and ``ecg classify`` share:

1. :func:`prepare_recording`: checks, quality, heart rate and model inputs (``ecg_shared.preprocessing.prepare``
   with each model's own spec), plus occluded copies when an explanation is wanted. CPU work: ``ecg classify`` runs
   it on threads; the service, in each worker process, runs its two halves (:func:`prepare_runs`, then
   :func:`summarise`) with onnxruntime started between them (:func:`classify_submitting`).
2. onnxruntime on the inputs of every applicable model: the service's micro-batcher, or :func:`run_batched` in
   process; both put many recordings into one call.
3. :func:`build_response`: probabilities, calls, verdict and explanation from the outputs.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from ecg_inference.explain import MeasurementPlan, OcclusionPlan, explain, plan_measurements, plan_occlusion
from ecg_inference.models import LoadedModel, ModelInputs, ModelSet
from ecg_shared.beats import recording_features
from ecg_shared.calibration import calibrate
from ecg_shared.formats import EcgFormatError, Record, read_ecg
from ecg_shared.heart import heart_rate
from ecg_shared.preprocessing import FilteredLeads, clean, window_batch, window_starts
from ecg_shared.quality import (
    FLAT_PEAK_TO_PEAK_MV,
    QualityReport,
    assess_quality,
    peak_to_peak,
    unreadable_leads_text,
)
from ecg_shared.schemas import (
    ClassifyJsonRequest,
    ClassifyResponse,
    ModelResult,
    QualityView,
    RecordingView,
    Timings,
    Verdict,
)
from ecg_shared.settings import get_settings

log = logging.getLogger(__name__)

VERDICT_RULE = (
    "a model is judged only when every lead it reads is readable (never a lead with no signal; where most leads "
    "have problems, only clean ones); the others are 'not judged' and count for nothing. Unreadable if no model is "
    "judged or every judged model's most likely class means 'too noisy to judge'. Otherwise, among the models "
    "that could read it, one model's call is the verdict; with several, their "
    "calibrated probabilities are combined in log-odds: those of the model that reads the most leads (the anchor), "
    "plus a quarter of each other model's log-odds relative to its training prevalence of abnormal (the weight "
    "measured on the 12-lead model's validation split; Bayes' rule for independent evidence, weight 1, made the "
    "combined probability worse). Abnormal when the combined probability reaches the anchor's threshold. "
    "(docs/inference.md)"
)
# Each other model's evidence (log-odds against its prevalence) counts this much beside the anchor's. On the 12-lead
# model's validation split (118 PTB-XL records, the rhythm model reading lead I), weights 0, 0.25, 0.5, 0.75 and 1
# gave Brier scores 0.119, 0.122, 0.130, 0.143, 0.160 and log-losses 0.378, 0.380, 0.405, 0.448, 0.507: 1
# (independent evidence) is worse than the anchor alone (Brier +0.007 to +0.072, 95% paired bootstrap), 0 and 0.25
# cannot be told apart, and 0.25 keeps a confident rhythm finding able to turn a verdict
# (services/training/scripts/experiments/verdict_combination.py; docs/inference.md).
OTHER_MODEL_WEIGHT = 0.25
PROBABILITY_FLOOR = 1e-4  # probabilities are held within [floor, 1 - floor] before taking log-odds
DEFAULT_PREVALENCE = 0.5  # for a model that does not record its training prevalence


MIN_SAMPLING_RATE_HZ = 50  # below this a QRS complex (about 100 ms) is a sample or two
# A recording filling less of a model's window than this is read mostly as zero padding. The bundled rhythm model
# (30 s windows) on 10 s strips of its own validation recordings: AUC of abnormal 0.88-0.90 against 0.945 on the
# whole recordings, mean F1 0.72-0.78 against 0.83 (services/training/scripts/experiments/rhythm_on_short_strips.py).
SHORT_INPUT_FRACTION = 0.5


class ClassificationError(Exception):
    """Input that cannot be classified; ``status`` is the HTTP status that names the problem (4xx or 503)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --- Step 0: input -----------------------------------------------------------------------------------------------


def read_upload(data: bytes, filename: str | None = None, fmt: str | None = None, fs: float | None = None) -> Record:
    """A record from uploaded bytes; every reader failure becomes a 422 with the reader's message."""
    if not data:
        raise ClassificationError(422, "the uploaded file is empty")
    source = io.BytesIO(data)
    source.name = filename or ""
    try:
        return read_ecg(source, format=fmt or None, fs=fs)
    except EcgFormatError as exc:
        raise ClassificationError(422, str(exc)) from None


def record_from_json(request: ClassifyJsonRequest) -> Record:
    try:
        samples = np.asarray(request.samples, dtype=np.float32)
    except ValueError:
        raise ClassificationError(422, "samples: rows differ in length (need one value per lead)") from None
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.shape[1] != len(request.leads):
        raise ClassificationError(
            422,
            f"samples rows have {samples.shape[1]} values but {len(request.leads)} lead names were given "
            "(samples is (n_samples, n_leads), one row per time step)",
        )
    try:
        return Record(samples, request.sampling_rate, list(request.leads), {"format": "json"})
    except EcgFormatError as exc:
        raise ClassificationError(422, str(exc)) from None


# --- Step 1: prepare ---------------------------------------------------------------------------------------------


@dataclass
class ModelRun:
    """One model applied to one recording: its windows, and when explaining the occluded copies (rows after the
    windows) and the measurements' variants (for the model's features part alone)."""

    model: LoadedModel
    lead_names: list[str]
    windows: np.ndarray
    plan: OcclusionPlan | None = None
    features: np.ndarray | None = None  # the recording's beat features, for a model fused with them
    measurements: MeasurementPlan | None = None
    explanation_note: str | None = None  # an explanation was asked for and no stretch of signal can be shaded: why
    seconds: float | None = None  # how long the signal the model read is

    @property
    def explained(self) -> bool:
        return self.plan is not None or self.measurements is not None or self.explanation_note is not None

    @property
    def inputs(self) -> ModelInputs:
        ecg = self.windows if self.plan is None else np.concatenate([self.windows, self.plan.inputs])
        features = None if self.features is None else np.repeat(self.features[None, :], len(ecg), axis=0)
        return ModelInputs(ecg, features)


@dataclass
class PreparedRecording:
    """Everything the answer needs besides the probabilities (no signal)."""

    recording: RecordingView
    quality: QualityReport
    runs: list[ModelRun]
    read_ms: float = 0.0
    preprocess_ms: float = 0.0
    explain_ms: float = 0.0
    explanation_note: str | None = None  # why an explanation that was asked for is missing


SIGNAL_BLIND_NOTE = (
    "this model answers from measurements of the whole recording (its rhythm, and each lead's median beat), not from "
    "any one stretch of it: blanking a stretch of signal does not change its answer, so nothing is shaded for it"
)
MEASURED_NOTE = SIGNAL_BLIND_NOTE + "; its measurements show what moved its answer"


def explanation_choice(record: Record, explain: bool) -> tuple[float | None, str | None]:
    """The segment length (s) to explain ``record`` with (None: no explanation) and, when an explanation was asked
    for but the recording is too long for one, why it is missing. An explanation costs one model input per lead and
    window (and one per segment): ECG_EXPLAIN_MAX_DURATION_S bounds it."""
    settings = get_settings()
    if not explain:
        return None, None
    if record.duration_s > settings.explain_max_duration_s:
        return None, (
            f"not explained: the recording lasts {record.duration_s:.0f} s, and occlusion explanations are computed "
            f"for recordings up to {settings.explain_max_duration_s:g} s (setting ECG_EXPLAIN_MAX_DURATION_S)"
        )
    return settings.explain_segment_s, None


def model_applies(model: LoadedModel, record: Record) -> bool:
    leads = model.leads
    return (len(leads) == 1 and record.n_leads == 1) or all(lead in record.lead_names for lead in leads)


def chosen_models(models: ModelSet, only: str | None = None) -> list[LoadedModel]:
    """The models a request may use: all active ones, or ``only`` (404 when it is not active)."""
    if not models:
        raise ClassificationError(503, "no active model: register and promote a model version (ecg models seed)")
    if only is None:
        return list(models.models.values())
    if only not in models.models:
        raise ClassificationError(404, f"no active model named {only!r} (active: {', '.join(models.models)})")
    return [models.models[only]]


def applicable_models(record: Record, chosen: list[LoadedModel]) -> list[LoadedModel]:
    usable = [m for m in chosen if model_applies(m, record)]
    if not usable:
        wanted = "; ".join(f"{m.name} needs {', '.join(m.leads)}" for m in chosen)
        raise ClassificationError(
            422, f"no model applies to a recording with leads {', '.join(record.lead_names)} ({wanted})"
        )
    return usable


def check_signal(record: Record, models: list[LoadedModel]) -> None:
    """Refuse what no model can read: too low a rate, NaN/inf, a flat line on every lead, too short for a model."""
    if record.sampling_rate < MIN_SAMPLING_RATE_HZ:
        raise ClassificationError(
            422, f"sampling rate {record.sampling_rate:g} Hz is too low for an ECG (at least {MIN_SAMPLING_RATE_HZ} Hz)"
        )
    bad = ~np.isfinite(record.signal)
    if bad.any():
        leads = [name for name, column in zip(record.lead_names, bad.T, strict=True) if column.any()]
        raise ClassificationError(
            422, f"signal contains {int(bad.sum())} NaN or infinite samples (lead {', '.join(leads)})"
        )
    if np.all(peak_to_peak(record.signal) < FLAT_PEAK_TO_PEAK_MV):
        raise ClassificationError(
            422,
            f"flat line: no lead varies by more than {FLAT_PEAK_TO_PEAK_MV} mV (electrodes off or nothing recorded)",
        )
    for model in models:
        minimum = model.min_duration_s
        if record.duration_s < minimum:
            raise ClassificationError(
                422,
                f"recording too short: {record.duration_s:.2f} s; {model.name} needs at "
                f"least {minimum:g} s (only from that length is a recording padded up to the model's window)",
            )


def _heart_rate_bpm(record: Record, filtered: FilteredLeads | None = None) -> float | None:
    """Heart rate for the answer; a detector failure on odd input leaves it unknown rather than failing the request."""
    try:
        return heart_rate(record, filtered).bpm
    except (TypeError, ValueError, IndexError, ZeroDivisionError) as exc:
        log.warning("heart rate detection failed on a %.0f Hz recording: %s", record.sampling_rate, exc)
        return None


def prepare_run(
    model: LoadedModel, record: Record, explain_segment_s: float | None, filtered: FilteredLeads | None = None
) -> tuple[ModelRun, float]:
    """The model's input windows (and occluded copies when ``explain_segment_s``), and the ms spent on the latter.
    ``filtered``: the request's filterings, shared by its models and its heart rate."""
    spec = model.metadata.preprocessing
    try:
        cleaned = clean(record, spec, filtered)
    except EcgFormatError as exc:
        raise ClassificationError(422, f"{model.name}: {exc}") from None
    windows = window_batch(cleaned, spec)
    lead_names = record.lead_names if (len(spec.leads) == 1 and record.n_leads == 1) else list(spec.leads)
    features = model.metadata.feature_spec
    if features is not None:  # the same function, on the same cleaned signal, as training
        features = recording_features(cleaned, spec.sampling_rate, list(spec.leads), features)
    run = ModelRun(model, list(lead_names), windows, features=features, seconds=cleaned.shape[0] / spec.sampling_rate)
    if not explain_segment_s:
        return run, 0.0
    started = time.perf_counter()
    if model.features_part is not None:
        run.measurements = plan_measurements(features, model.metadata.feature_reference, model.metadata.feature_spec)
    if model.metadata.signal_blind:
        run.explanation_note = SIGNAL_BLIND_NOTE if run.measurements is None else MEASURED_NOTE
    else:
        length = cleaned.shape[0]
        starts = window_starts(length, spec.window_samples, spec.window_samples)
        run.plan = plan_occlusion(windows, starts, length, spec.sampling_rate, run.lead_names, explain_segment_s)
    return run, (time.perf_counter() - started) * 1000


def prepare_recording(
    record: Record, models: ModelSet, explain: bool, only: str | None = None, read_ms: float = 0.0
) -> PreparedRecording:
    """Step 1 in process for ``models`` (or ``only``): checks, each applicable model's inputs (occluded copies too
    when ``explain``), quality and heart rate. The service runs the same two halves with onnxruntime started between
    them (:func:`classify_submitting`)."""
    segment_s, note = explanation_choice(record, explain)
    started = time.perf_counter()
    filtered = FilteredLeads(record)
    runs, explain_ms = prepare_runs(record, chosen_models(models, only), segment_s, filtered)
    recording, quality = summarise(record, filtered)
    preprocess_ms = (time.perf_counter() - started) * 1000 - explain_ms
    return PreparedRecording(recording, quality, runs, read_ms, preprocess_ms, explain_ms, note)


def prepare_runs(
    record: Record,
    models: list[LoadedModel],
    explain_segment_s: float | None,
    filtered: FilteredLeads | None = None,
    on_ready: Callable[[ModelRun], None] | None = None,
) -> tuple[list[ModelRun], float]:
    """Refuse what no model can read (4xx), then each applicable model's inputs, each handed to ``on_ready`` as soon
    as it is prepared; and the ms spent on occluded copies."""
    chosen = applicable_models(record, models)
    check_signal(record, chosen)
    runs, explain_ms = [], 0.0
    for model in chosen:
        run, ms = prepare_run(model, record, explain_segment_s, filtered)
        runs.append(run)
        explain_ms += ms
        if on_ready is not None:
            on_ready(run)
    return runs, explain_ms


def summarise(record: Record, filtered: FilteredLeads | None = None) -> tuple[RecordingView, QualityReport]:
    """What the answer says of the recording itself: format, rate, leads, duration, heart rate, quality."""
    quality = assess_quality(record)
    bpm = _heart_rate_bpm(record, filtered)
    recording = RecordingView(
        format=record.format,
        sampling_rate=record.sampling_rate,
        leads=record.lead_names,
        duration_s=round(record.duration_s, 3),
        n_samples=record.n_samples,
        heart_rate_bpm=None if bpm is None else round(bpm, 1),
        quality=QualityView(**quality.to_dict()),
    )
    return recording, quality


async def classify_submitting(
    record: Record,
    models: list[LoadedModel],
    explain: bool,
    submit: Callable[[LoadedModel, np.ndarray], Awaitable[np.ndarray]],
    read_ms: float,
    started: float,
    prepare_in: Executor | None = None,
) -> ClassifyResponse:
    """The service's steps 1-3: each model's inputs go to onnxruntime (``submit``, which starts the call on another
    thread at once) as soon as they are ready, the next model's prepared and quality and heart rate computed while
    it runs. ``prepare_in``:
    an executor to prepare the inputs on instead of the caller's thread (long recordings)."""
    segment_s, note = explanation_choice(record, explain)
    prepare_started = time.perf_counter()
    filtered = FilteredLeads(record)
    outputs: list[Awaitable[np.ndarray]] = []
    submitted: list[float] = []

    def start(run: ModelRun) -> None:  # onnxruntime starts on this model while the next one is prepared
        submitted.append(time.perf_counter())
        outputs.append(submit(run.model, run.inputs))

    if prepare_in is None:
        runs, explain_ms = prepare_runs(record, models, segment_s, filtered, start)
    else:
        loop = asyncio.get_running_loop()
        runs, explain_ms = await loop.run_in_executor(prepare_in, prepare_runs, record, models, segment_s, filtered)
        for run in runs:  # the batcher is the event loop's: its calls start from this thread
            start(run)
    if prepare_in is None:
        recording, quality = summarise(record, filtered)
    else:
        recording, quality = await asyncio.get_running_loop().run_in_executor(prepare_in, summarise, record, filtered)
    preprocess_ms = (time.perf_counter() - prepare_started) * 1000 - explain_ms
    probabilities = await asyncio.gather(*outputs)
    prepared = PreparedRecording(recording, quality, runs, read_ms, preprocess_ms, explain_ms, note)
    return build_response(prepared, list(probabilities), (time.perf_counter() - submitted[0]) * 1000, started)


# --- Step 2: onnxruntime -----------------------------------------------------------------------------------------


def run_batched(
    model: LoadedModel, arrays: list[ModelInputs | np.ndarray], max_rows: int | None = None
) -> list[np.ndarray]:
    """Probabilities for each of ``arrays`` (model inputs, or bare windows for a network without features) from as
    few onnxruntime calls as ``max_rows`` (default: the model's batch limit) allows."""
    max_rows = max_rows or model.batch_limit
    parts = [a if isinstance(a, ModelInputs) else ModelInputs(a) for a in arrays]
    sizes = [len(a) for a in parts]
    joined = ModelInputs.join(parts)
    outputs = [model.predict(joined.rows(i, i + max_rows)) for i in range(0, len(joined), max_rows)]
    probabilities = outputs[0] if len(outputs) == 1 else np.concatenate(outputs)
    return np.split(probabilities, np.cumsum(sizes)[:-1])


# --- Step 3: answer ----------------------------------------------------------------------------------------------


def model_result(run: ModelRun, probabilities: np.ndarray, quality: QualityReport | None = None) -> ModelResult:
    """One model's answer; with ``quality``, 'unreadable' and ``not_judged`` when it reads a lead that is not
    readable (:func:`ecg_shared.quality.unreadable_leads_text`)."""
    meta = run.model.metadata
    not_judged = None if quality is None else unreadable_leads_text(quality, run.lead_names)
    mean = calibrate(probabilities.mean(axis=0, keepdims=True), meta.calibration)[0]
    by_class = {label: float(p) for label, p in zip(meta.classes, mean, strict=True)}
    predicted = meta.classes[int(np.argmax(mean))]
    p_abnormal = float(sum(by_class[c] for c in meta.abnormal_classes))
    if not_judged is not None or predicted in meta.unreadable_classes:
        call = "unreadable"
    elif p_abnormal >= meta.threshold:
        call = "abnormal"
    else:
        call = "normal"
    return ModelResult(
        name=meta.name,
        version=run.model.version,
        family=meta.family,
        leads=run.lead_names,
        probabilities=by_class,
        predicted_class=predicted,
        call=call,
        p_abnormal=p_abnormal,
        threshold=meta.threshold,
        windows=len(run.windows),
        not_judged=not_judged,
        caveat=short_input_caveat(run),
    )


def short_input_caveat(run: ModelRun) -> str | None:
    """The answer's caveat when the recording fills less than :data:`SHORT_INPUT_FRACTION` of the model's window."""
    spec = run.model.metadata.preprocessing
    if run.seconds is None or run.seconds >= SHORT_INPUT_FRACTION * spec.window_s:
        return None
    share = int(100 * run.seconds / spec.window_s)  # not rounded up: 49% is under half
    return (
        f"read {run.seconds:.3g} s, {share}% of its {spec.window_s:g} s window (the rest "
        "zero-padded): it learned from and was validated on recordings as long as its window, and is less reliable "
        "on a strip this short"
    )


def combine(quality: QualityReport, results: list[ModelResult], models: list[LoadedModel]) -> Verdict:
    """The overall verdict; see :data:`VERDICT_RULE`."""
    if not quality.usable and not quality.readable_leads:
        return Verdict(label="unreadable", probability=None, rule=f"quality check failed: {'; '.join(quality.reasons)}")
    judged = [(r, m) for r, m in zip(results, models, strict=True) if r.not_judged is None]
    not_judged = "".join(f"; {r.name} not judged: {r.not_judged}" for r in results if r.not_judged is not None)
    if not judged:
        return Verdict(label="unreadable", probability=None, rule=f"no model could be judged{not_judged}")
    if not quality.usable:  # most leads have problems: the judged models read only clean ones
        not_judged += f"; the recording failed the quality check ({'; '.join(quality.reasons)}): only models "
        not_judged += f"reading clean leads ({', '.join(quality.readable_leads)}) were judged"
    unreadable = [(r, m) for r, m in judged if r.call == "unreadable"]
    readable = [(r, m) for r, m in judged if r.call != "unreadable"]
    if not readable:
        result, model = max(unreadable, key=lambda pair: _p_unreadable(*pair))
        return Verdict(
            label="unreadable",
            probability=_p_unreadable(result, model),
            rule=f"{result.name} finds the recording too noisy to judge (most likely class {result.predicted_class!r})"
            f"{not_judged}",
        )
    noted = "".join(f"; {r.name} found it too noisy to judge" for r, _ in unreadable) + not_judged
    anchor, _ = max(readable, key=lambda pair: len(pair[0].leads))
    others = [(r, m) for r, m in readable if r is not anchor]
    log_odds = _log_odds(anchor.p_abnormal) + OTHER_MODEL_WEIGHT * sum(
        _log_odds(r.p_abnormal) - _log_odds(_prevalence(m)) for r, m in others
    )
    p_abnormal = float(1.0 / (1.0 + np.exp(-log_odds)))
    label = "abnormal" if p_abnormal >= anchor.threshold else "normal"
    disagreement = len({r.call for r, _ in readable}) > 1
    calls = ", ".join(f"{r.name} {r.call} (p_abnormal {r.p_abnormal:.3f})" for r, _ in readable)
    if not others:
        rule = (
            f"{anchor.name} calls {label}: p_abnormal {anchor.p_abnormal:.3f} "
            f"{'>=' if label == 'abnormal' else '<'} threshold {anchor.threshold:.3f}{noted}"
        )
    else:
        shifts = "; ".join(
            f"{r.name} p_abnormal {r.p_abnormal:.3f} against its prevalence {_prevalence(m):.2f}, weighted "
            f"{OTHER_MODEL_WEIGHT:g}, moves the odds "
            f"x{np.exp(OTHER_MODEL_WEIGHT * (_log_odds(r.p_abnormal) - _log_odds(_prevalence(m)))):.2g}"
            for r, m in others
        )
        rule = (
            f"{'the models disagree' if disagreement else 'the models agree'}: {calls}. Combined: {anchor.name} "
            f"(reads {len(anchor.leads)} lead{'s' if len(anchor.leads) > 1 else ''}) p_abnormal "
            f"{anchor.p_abnormal:.3f}; {shifts}; combined p_abnormal {p_abnormal:.3f} "
            f"{'>=' if label == 'abnormal' else '<'} {anchor.name}'s threshold {anchor.threshold:.3f}, so {label}"
            f"{noted}"
        )
    return Verdict(
        label=label,
        probability=p_abnormal if label == "abnormal" else 1.0 - p_abnormal,
        p_abnormal=p_abnormal,
        rule=rule,
        disagreement=disagreement,
        anchor=anchor.name,
    )


def _log_odds(p: float) -> float:
    p = min(max(float(p), PROBABILITY_FLOOR), 1.0 - PROBABILITY_FLOOR)
    return float(np.log(p / (1.0 - p)))


def _prevalence(model: LoadedModel) -> float:
    prevalence = model.metadata.abnormal_prevalence
    return DEFAULT_PREVALENCE if prevalence is None else prevalence


def _p_unreadable(result: ModelResult, model: LoadedModel) -> float:
    return float(sum(result.probabilities[c] for c in model.metadata.unreadable_classes))


def build_response(
    prepared: PreparedRecording, outputs: list[np.ndarray], inference_ms: float, started: float
) -> ClassifyResponse:
    """The answer for ``prepared`` given each run's onnxruntime output (window rows, then occluded rows)."""
    results, explanations = [], []
    explain_ms = prepared.explain_ms
    for run, probabilities in zip(prepared.runs, outputs, strict=True):
        n = len(run.windows)
        results.append(model_result(run, probabilities[:n], prepared.quality))
        if run.explained and results[-1].not_judged is None:  # nothing to explain in an answer not used
            t = time.perf_counter()
            measured = run.measurements
            explanations.append(
                explain(
                    run.model.name,
                    run.model.metadata.classes,
                    probabilities[:n],
                    run.model.metadata.calibration,
                    plan=run.plan,
                    occluded_probabilities=probabilities[n:],
                    measurements=measured,
                    features_parts=None if measured is None else run.model.predict_features_part(measured.features),
                    note=run.explanation_note,
                )
            )
            explain_ms += (time.perf_counter() - t) * 1000
    providers = list(dict.fromkeys(p for run in prepared.runs for p in run.model.providers))
    return ClassifyResponse(
        recording=prepared.recording,
        models=results,
        verdict=combine(prepared.quality, results, [run.model for run in prepared.runs]),
        explanation=explanations if explanations else None,
        explanation_note=prepared.explanation_note,
        timings=Timings(
            read_ms=round(prepared.read_ms, 3),
            preprocess_ms=round(prepared.preprocess_ms, 3),
            inference_ms=round(inference_ms, 3),
            explain_ms=round(explain_ms, 3),
            total_ms=round((time.perf_counter() - started) * 1000, 3),
            providers=providers,
        ),
    )


def classify_prepared(
    batch: list[PreparedRecording],
    starts: list[float],
    run: Callable[[LoadedModel, list[np.ndarray]], list[np.ndarray]] = run_batched,
) -> list[ClassifyResponse]:
    """Answers for many prepared recordings with one onnxruntime call per model (in process, ``ecg classify``)."""
    by_model: dict[LoadedModel, list[tuple[int, int]]] = {}
    for i, prepared in enumerate(batch):
        for j, model_run in enumerate(prepared.runs):
            by_model.setdefault(model_run.model, []).append((i, j))
    outputs: list[list[np.ndarray | None]] = [[None] * len(p.runs) for p in batch]
    t = time.perf_counter()
    for model, slots in by_model.items():
        for (i, j), probabilities in zip(slots, run(model, [batch[i].runs[j].inputs for i, j in slots]), strict=True):
            outputs[i][j] = probabilities
    inference_ms = (time.perf_counter() - t) * 1000
    return [build_response(p, o, inference_ms, s) for p, o, s in zip(batch, outputs, starts, strict=True)]
