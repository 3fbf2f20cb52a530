"""Validation split only: how well does the rhythm model read a 10 s strip, the length every 12-lead recording gives it?

It learned from CinC 2017's AliveCor recordings, 9 to 61 s long (most 30 s), through 30 s windows, and on a
12-lead recording it reads a 10 s lead I, zero-padded to its window. Every recording of the bundled model's
validation split (rebuilt from its card as ``drift_reference.py`` does, from a database holding CinC 2017) goes
through the service's own path (``prepare_recording`` + ``classify_prepared``: cleaning, beat features, the graph,
calibration, the threshold) whole, then as strips of 10 s cut from its raw signal: the first 10 s, and the 10 s in
the middle. The labels are the whole recording's, which a strip of it may not show (an episode of AF elsewhere),
so a strip's scores are a lower bound of what the model does on 10 s recordings; the comparison says how much of
the model's skill rests on length. The test split is never read.

A strip shorter than the window reaches the network zero-padded (the service's way, as training pads recordings
shorter than 30 s). Two other ways are scored beside it, the same cleaned strip and features: the network at the
strip's own length (the graph's time axis made free: convolutions and a global average pool, so only the real
samples are averaged), and the strip repeated to fill the window.

    ECG_DATABASE_URL=... .venv/bin/python services/training/scripts/experiments/rhythm_on_short_strips.py \\
        models/rhythm-1lead.onnx
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import drift_reference  # the script beside this folder: the card's recipe and split

from ecg_inference.classify import classify_prepared, model_result, prepare_recording, prepare_run
from ecg_inference.models import ModelSet, load_model
from ecg_shared.formats import Record, read_ecg
from ecg_shared.schemas import ModelResult
from ecg_shared.settings import get_settings

STRIP_S = 10.0


def free_length_session(model_path: Path):
    """The bundled graph with its time axis free (tf2onnx wrote one Reshape with the window's length: (-1, 1, 1,
    window) of a (batch, 1, window, 1) tensor, which becomes (0, 1, 1, -1): the batch copied, the length free)."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    graph = onnx.load(str(model_path))
    constants = {tensor.name: tensor for tensor in graph.graph.initializer}
    for node in graph.graph.node:
        if node.op_type == "Reshape" and node.input[1] in constants:
            shape = numpy_helper.to_array(constants[node.input[1]])
            if shape.tolist()[:3] == [-1, 1, 1]:
                constants[node.input[1]].CopyFrom(numpy_helper.from_array(np.array([0, 1, 1, -1]), node.input[1]))
    for tensor in graph.graph.input:
        if tensor.name == "ecg":
            tensor.type.tensor_type.shape.dim[1].dim_param = "time"
    del graph.graph.value_info[:]
    return ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])


def other_padding(session, model, record: Record, how: str) -> ModelResult:
    """The service's answer for ``record`` (its calibration, call and class, ``model_result``) with its one
    zero-padded window given to the network another way."""
    run, _ = prepare_run(model, record, None)
    window = run.windows[:, : round(run.seconds * model.metadata.preprocessing.sampling_rate)]
    if how == "repeated":
        window = np.tile(window, (1, -(-run.windows.shape[1] // window.shape[1]), 1))[:, : run.windows.shape[1]]
    feeds = {"ecg": window.astype(np.float32), "features": run.features[None].astype(np.float32)}
    return model_result(run, session.run(None, feeds)[0])


def strip(record: Record, where: str) -> Record:
    n = round(STRIP_S * record.sampling_rate)
    start = 0 if where == "first" else max((record.signal.shape[0] - n) // 2, 0)
    return Record(record.signal[start : start + n], record.sampling_rate, record.lead_names, {})


def scores(results: list, truth: list[str], normal: str, readable: list[str]) -> dict[str, float]:
    keep = [i for i, t in enumerate(truth) if t in readable]
    predicted = [results[i].predicted_class for i in keep]
    y = [truth[i] for i in keep]
    abnormal = np.array([t != normal for t in y])
    p = np.array([results[i].p_abnormal for i in keep])
    called = np.array([results[i].call == "abnormal" for i in keep])
    return {
        "mean_f1": float(f1_score(y, predicted, labels=readable, average="macro")),
        **{f"f1_{c}": float(f1_score(y, predicted, labels=[c], average="macro")) for c in readable},
        "auc_abnormal": float(roc_auc_score(abnormal, p)),
        "false_alarms": float(called[~abnormal].mean()),
        "sensitivity": float(called[abnormal].mean()),
    }


def main(model_path: Path) -> None:
    card = json.loads(model_path.with_name(model_path.name.removesuffix(".onnx") + ".card.json").read_text())
    model = load_model(model_path.read_bytes(), expected_name=model_path.stem)
    models = ModelSet({model.name: model})
    folder = get_settings().data_dir / card["data"]["dataset"]
    files = drift_reference.split_files(model_path, "validation")
    readable = [c for c in model.metadata.classes if c not in model.metadata.unreadable_classes]
    normal = model.metadata.normal_classes[0]
    started = time.perf_counter()
    session = free_length_session(model_path)
    truth: list[str] = []
    answers: dict[str, list] = {"whole": []}
    for name in files:
        record = read_ecg(folder / f"{name}.hea")
        truth.append(record.label)
        (result,) = classify_prepared([prepare_recording(record, models, explain=False)], [time.perf_counter()])
        answers["whole"].append(result.models[0])
        short = record.duration_s < model.metadata.preprocessing.window_s  # one window, padded
        answers.setdefault("whole, own length where short", []).append(
            other_padding(session, model, record, "own length") if short else result.models[0]
        )
        for where in ("first", "middle"):
            given = strip(record, where)
            (result,) = classify_prepared([prepare_recording(given, models, explain=False)], [time.perf_counter()])
            answers.setdefault(f"{where} 10 s, zero-padded", []).append(result.models[0])
            for how in ("own length", "repeated"):
                answers.setdefault(f"{where} 10 s, {how}", []).append(other_padding(session, model, given, how))
    print(f"{model_path.name}: {len(files)} validation recordings, {time.perf_counter() - started:.0f} s")
    for variant, results in answers.items():
        figures = scores(results, truth, normal, readable)
        print(f"  {variant:30s} " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()))
    rng = np.random.default_rng(0)
    pairs = [("whole, own length where short", "whole")] + [
        (f"{where} 10 s, {how}", f"{where} 10 s, zero-padded")
        for where in ("first", "middle")
        for how in ("own length", "repeated")
    ]
    print("paired differences, 1000 bootstrap resamples of the recordings (95% interval):")
    for other, base in pairs:
        differences = {"mean_f1": [], "auc_abnormal": [], "false_alarms": []}
        for _ in range(1000):
            rows = rng.integers(0, len(truth), len(truth))
            a = scores([answers[other][i] for i in rows], [truth[i] for i in rows], normal, readable)
            b = scores([answers[base][i] for i in rows], [truth[i] for i in rows], normal, readable)
            for key in differences:
                differences[key].append(a[key] - b[key])
        print(
            f"  {other} - {base}: "
            + ", ".join(
                f"{key} {np.mean(v):+.3f} [{np.percentile(v, 2.5):+.3f}, {np.percentile(v, 97.5):+.3f}]"
                for key, v in differences.items()
            )
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
