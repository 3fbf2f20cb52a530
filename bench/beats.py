"""Heart-rate detectors on real recordings (issue 17): neurokit2's, which the answer's heart rate uses
(``ecg_shared.heart``), against sleepecg's, which the beat features use (``ecg_shared.beats``), with wfdb's XQRS as
a third, independent opinion and the ISHNE Holter file's own beat annotations as the one ground truth at hand.

``python -m bench --module bench.beats [--arg beats.n=N]``: the first N CinC 2017 records and the first N PTB-XL
records (all labels), the Wellnest sample and every clinical file in ``formats/`` that reads. Per recording: the
heart-rate lead as ``heart_rate`` picks it (II, else I, V5, V2, else the only lead), band-passed 0.5-40 Hz; both
detectors' beats and median-RR heart rates (20-300 bpm intervals), and XQRS's on the same band-passed lead.

Where the two disagree by more than 2 bpm, XQRS breaks the tie when it agrees (within 2 bpm) with exactly one of
them; "neither" when it agrees with none. Not in ``make bench``'s default set: it measures agreement, not speed
(though it reports each detector's time per recording too).
"""

from __future__ import annotations

import csv
import logging
import struct
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

AGREE_BPM = 2.0
MATCH_S = 0.05  # a beat counts as found when one of the other detector's lies this close (after a constant offset)
ISHNE = ("formats/ishne_holter/ECG_P28.01.ecg", "formats/ishne_holter/ECG_P28.01.ann")


def heart_rate_lead(record) -> str:
    from ecg_shared.heart import _PREFERRED_LEADS

    return ([lead for lead in _PREFERRED_LEADS if lead in record.lead_names] or record.lead_names[:1])[0]


def xqrs_beats(cleaned: np.ndarray, sampling_rate: float) -> np.ndarray:
    import wfdb.processing

    logging.getLogger("wfdb").setLevel(logging.ERROR)
    try:
        detector = wfdb.processing.XQRS(sig=np.asarray(cleaned, dtype=np.float64), fs=sampling_rate)
        detector.detect(verbose=False)
        return np.asarray(detector.qrs_inds, dtype=np.int64)
    except Exception:  # XQRS gives up on some signals (too short to learn from): no opinion
        return np.array([], dtype=np.int64)


def found_fraction(beats: np.ndarray, reference: np.ndarray, sampling_rate: float) -> float:
    """Share of ``reference`` beats with one of ``beats`` within MATCH_S, after the median offset between them (the
    detectors mark different points of the QRS)."""
    if not len(beats) or not len(reference):
        return 0.0
    nearest = np.array([beats[np.argmin(np.abs(beats - r))] - r for r in reference])
    return float(np.mean(np.abs(nearest - np.median(nearest)) <= MATCH_S * sampling_rate))


def measure(record) -> dict[str, Any]:
    from ecg_shared.beats import detect_beats
    from ecg_shared.heart import BAND_HZ, detect_rpeaks, rate_from_rpeaks
    from ecg_shared.preprocessing import filter_signal

    fs = record.sampling_rate
    lead = record.lead(heart_rate_lead(record))
    started = time.perf_counter()
    neurokit = detect_rpeaks(lead, fs)
    neurokit_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    cleaned = filter_signal(lead[:, None], fs, *BAND_HZ)[:, 0]
    sleepecg = detect_beats(cleaned, fs)
    sleepecg_ms = (time.perf_counter() - started) * 1000
    xqrs = xqrs_beats(cleaned, fs)
    return {
        "neurokit2_bpm": rate_from_rpeaks(neurokit, fs),
        "sleepecg_bpm": rate_from_rpeaks(sleepecg, fs),
        "xqrs_bpm": rate_from_rpeaks(xqrs, fs),
        "found": found_fraction(sleepecg, neurokit, fs),
        "neurokit2_ms": neurokit_ms,
        "sleepecg_ms": sleepecg_ms,
    }


def verdict(m: dict[str, Any]) -> str:
    """agree | neurokit2 (XQRS sides with it) | sleepecg | neither | no rate."""

    def close(a, b) -> bool:
        return a is not None and b is not None and abs(a - b) <= AGREE_BPM

    if m["neurokit2_bpm"] is None or m["sleepecg_bpm"] is None:
        return "agree" if m["neurokit2_bpm"] is m["sleepecg_bpm"] else "no rate"
    if close(m["neurokit2_bpm"], m["sleepecg_bpm"]):
        return "agree"
    if close(m["neurokit2_bpm"], m["xqrs_bpm"]):
        return "neurokit2"
    if close(m["sleepecg_bpm"], m["xqrs_bpm"]):
        return "sleepecg"
    return "neither"


def recordings(data: Path, n: int):
    """(set, name, record) for the recordings described above."""
    from ecg_shared.formats import EcgFormatError, read_ecg

    labels = dict(csv.reader((data / "cinc2017" / "REFERENCE.csv").open()))
    for header in sorted((data / "cinc2017").glob("A*.hea"))[:n]:
        yield f"CinC 2017 ({labels.get(header.stem, '?')})", header.stem, read_ecg(header)
    for header in sorted((data / "ptbxl").glob("*_lr.hea"))[:n]:
        yield "PTB-XL (100 Hz)", header.stem, read_ecg(header)
    yield "Wellnest (500 Hz)", "sample-10s.raw", read_ecg(data / "wellnest" / "sample-10s.raw")
    for path in sorted((data / "formats").rglob("*")):
        if path.is_file() and path.suffix.lower() not in (".md", ".ann"):
            try:
                yield "clinical files", path.name, read_ecg(path)
            except EcgFormatError:
                continue  # a file the readers refuse (the ISHNE annotation file): no recording


def ishne_annotations(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Sample indices and labels of the annotations of an ISHNE annotation file (header, then the first beat's
    sample, then per annotation: label, internal byte, uint16 samples since the previous one). Labels: ``N`` a
    normal beat, ``X`` an artefact."""
    raw = path.read_bytes()
    (offset,) = struct.unpack("<i", raw[18:22])
    (first,) = struct.unpack("<I", raw[offset : offset + 4])
    entries = raw[offset + 4 :]
    starts = range(0, len(entries) - 3, 4)
    steps = [struct.unpack("<H", entries[i + 2 : i + 4])[0] for i in starts]
    return first + np.cumsum(steps), np.array([chr(entries[i]) for i in starts])


def against_annotations(data: Path) -> list[dict[str, Any]]:
    """Each detector against the ISHNE file's annotations: sensitivity over its normal beats, positive predictive
    value against every annotation (a detection at an ``X`` annotation is not counted false)."""
    from ecg_shared.beats import detect_beats
    from ecg_shared.formats import read_ecg
    from ecg_shared.heart import BAND_HZ, detect_rpeaks
    from ecg_shared.preprocessing import filter_signal

    record = read_ecg(data / ISHNE[0])
    positions, labels = ishne_annotations(data / ISHNE[1])
    beats_annotated = positions[labels == "N"]
    fs = record.sampling_rate
    rows = []
    for lead in ("II", "V5"):
        x = record.lead(lead)
        detected = {
            "neurokit2": detect_rpeaks(x, fs),
            "sleepecg": detect_beats(filter_signal(x[:, None], fs, *BAND_HZ)[:, 0], fs),
        }
        for name, beats in detected.items():
            rows.append(
                {
                    "lead": lead,
                    "detector": name,
                    "annotated beats": len(beats_annotated),
                    "annotated other": int(np.sum(labels != "N")),
                    "detected": len(beats),
                    "sensitivity": round(found_fraction(beats, beats_annotated, fs), 3),
                    "ppv": round(found_fraction(positions, beats, fs), 3),
                }
            )
    return rows


def run(n: int = 1000) -> dict[str, Any]:
    from ecg_shared.settings import get_settings

    data = get_settings().data_dir
    by_set: dict[str, list[dict[str, Any]]] = {}
    disagreements = []
    for group, name, record in recordings(data, n):
        m = measure(record)
        m["verdict"] = verdict(m)
        by_set.setdefault(group, []).append(m)
        if m["verdict"] != "agree":
            disagreements.append({"set": group, "recording": name, **{k: m[k] for k in m if k.endswith("bpm")}})
    rows = []
    for group, measured in sorted(by_set.items()):
        verdicts = Counter(m["verdict"] for m in measured)
        differences = [
            abs(m["neurokit2_bpm"] - m["sleepecg_bpm"])
            for m in measured
            if m["neurokit2_bpm"] is not None and m["sleepecg_bpm"] is not None
        ]
        rows.append(
            {
                "set": group,
                "recordings": len(measured),
                "within 1 bpm": round(float(np.mean(np.array(differences) <= 1.0)), 3) if differences else None,
                "within 2 bpm": round(float(np.mean(np.array(differences) <= 2.0)), 3) if differences else None,
                "neurokit2 beats found by sleepecg": round(float(np.mean([m["found"] for m in measured])), 3),
                "XQRS sides with neurokit2": verdicts["neurokit2"],
                "XQRS sides with sleepecg": verdicts["sleepecg"],
                "neither": verdicts["neither"] + verdicts["no rate"],
                "neurokit2 ms": round(float(np.mean([m["neurokit2_ms"] for m in measured])), 2),
                "sleepecg ms": round(float(np.mean([m["sleepecg_ms"] for m in measured])), 2),
            }
        )
    every = [m for measured in by_set.values() for m in measured]
    totals = Counter(m["verdict"] for m in every)
    return {
        "name": "beats",
        "title": "Heart-rate detectors on real recordings",
        "rows": rows,
        "ratios": {
            "recordings within 2 bpm": round(totals["agree"] / len(every), 3),
            "sleepecg / neurokit2 time per recording": round(
                float(np.mean([m["sleepecg_ms"] for m in every]) / np.mean([m["neurokit2_ms"] for m in every])), 2
            ),
        },
        "notes": [
            f"{len(every)} recordings; neurokit2 and sleepecg within {AGREE_BPM:g} bpm on {totals['agree']}; of the "
            f"others XQRS sides with neurokit2 on {totals['neurokit2']}, with sleepecg on {totals['sleepecg']}, with "
            f"neither on {totals['neither'] + totals['no rate']}.",
            "ISHNE Holter file (1000 Hz, 95.6 s) against its own beat annotations: "
            + "; ".join(
                f"{r['detector']} on {r['lead']}: sensitivity {r['sensitivity']}, PPV {r['ppv']} "
                f"({r['detected']} detected; {r['annotated beats']} N beats and {r['annotated other']} X "
                "annotations)"
                for r in against_annotations(data)
            ),
            "times per recording include the band-pass for both detectors, and for sleepecg the move of each beat "
            "to the largest QRS deflection; a set's first recording pays for imports (the one Wellnest recording).",
        ],
        "disagreements": disagreements,
    }
