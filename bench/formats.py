"""Read time per clinical file format (issue 14): ``read_ecg`` on each real sample file under ECG_DATA_DIR/formats,
from bytes in memory, best of ``repeats``; reported per file and as ms per 10 s of 12 leads (the time scaled by the
recording's duration × leads), with WFDB (a zipped 12-lead 10 s PTB-XL record, decoded in memory) as the baseline.

``python -m bench --only formats [--quick]``; ``python -m bench.formats`` prints the result as JSON.
"""

from __future__ import annotations

import json
import time
from typing import Any

BASELINE = "wfdb (baseline)"
REFERENCE_LEAD_SECONDS = 10 * 12  # a 10 s 12-lead recording, the unit the rows are scaled to


def _best_ms(read, data: bytes, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        read(data)
        best = min(best, time.perf_counter() - started)
    return best * 1000


def _row(label: str, name: str, data: bytes, repeats: int) -> dict[str, Any]:
    from ecg_shared.formats import read_ecg

    record = read_ecg(data)
    ms = _best_ms(read_ecg, data, repeats)
    per_reference = ms * REFERENCE_LEAD_SECONDS / (record.duration_s * record.n_leads)
    return {
        "format": label,
        "file": name,
        "size_kb": round(len(data) / 1024, 1),
        "leads": record.n_leads,
        "rate_hz": record.sampling_rate,
        "duration_s": round(record.duration_s, 2),
        "read_ms": round(ms, 2),
        "ms_per_10s_12_lead": round(per_reference, 2),
    }


def run(quick: bool = False, repeats: int = 20) -> dict[str, Any]:
    from ecg_shared.formats import EcgFormatError, read_ecg, zip_wfdb_record
    from ecg_shared.settings import get_settings

    repeats = 3 if quick else repeats
    data_dir = get_settings().data_dir
    folder = data_dir / "formats"
    if not folder.is_dir():
        raise FileNotFoundError(f"clinical-format samples not found at {folder}")
    rows = []
    baseline = sorted((data_dir / "ptbxl").glob("*_hr.hea")) or sorted((data_dir / "ptbxl").glob("*.hea"))
    if baseline:
        rows.append(_row(BASELINE, baseline[0].name, zip_wfdb_record(baseline[0]), repeats))
    skipped = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix != ".md"):
        data = path.read_bytes()
        try:
            record = read_ecg(data)
        except EcgFormatError as exc:
            skipped.append(f"{path.relative_to(folder)}: {str(exc)[:80]}")
            continue
        variant = record.metadata.get("variant")  # a vendor's departure (Healforce SCP): a format of its own here
        fmt = f"{record.format} ({variant})" if variant else record.format
        rows.append(_row(fmt, str(path.relative_to(folder)), data, repeats))
    per_format: dict[str, list[float]] = {}
    for row in rows:
        per_format.setdefault(row["format"], []).append(row["ms_per_10s_12_lead"])
    return {
        "name": "formats",
        "title": "Read time per file format",
        "rows": rows,
        "ratios": {
            f"{fmt} / wfdb": min(times) / min(per_format[BASELINE])
            for fmt, times in per_format.items()
            if fmt != BASELINE and BASELINE in per_format
        },
        "notes": [
            f"read_ecg from bytes, detection included, best of {repeats}; one process, one thread",
            "ms_per_10s_12_lead scales read_ms by the recording's duration × leads to those of a 10 s 12-lead ECG",
            *[f"not a recording: {line}" for line in skipped],
        ],
    }


if __name__ == "__main__":
    print(json.dumps(run(quick=True), indent=2, default=str))
