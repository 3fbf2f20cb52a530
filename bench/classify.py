"""Classification throughput and latency (issue 8): the gateway, the inference service, the raw onnxruntime session
(the ceiling) and the original design (Flask calling Keras ``model.predict`` per request), same network, same
recordings, same run.

Models: the services and the raw onnxruntime ceiling serve the bundled ONNX files themselves (each a network fused
with gradient-boosted trees over the recording's beat features: inputs ``ecg`` and ``features``); Flask serves a Keras
model of the same family, lead set, window and classes (``ecg_training.families``, random weights: weights do not
change the cost), the network alone, as the original design had no beat features. Without bundled files, every
contestant gets that Keras network (exported with ``ecg_training.export.to_onnx``). Recordings: real
single-lead CinC 2017 records (WFDB zips) and real 12-lead PTB-XL records and the Wellnest recording, sent as
uploads. A load generator (asyncio streams sending prebuilt HTTP/1.1 requests over keep-alive connections, so it
takes little of the CPU the servers share with it; its CPU per request is reported) runs in a second process on
loopback, each concurrency level bounded by time and by request count.

``python -m bench --only classify``; the helpers below are also entry points of this module's own processes:
``python -m bench.classify flask PORT MODELS_DIR`` and ``python -m bench.classify load ...``.
"""

from __future__ import annotations

import asyncio
import cProfile
import hashlib
import io
import json
import logging
import os
import pickle
import pstats
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from ecg_shared.settings import overridden_setting

REPO_ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = (1, 8, 32, 128)
DEFAULT_SPECS = {  # used when the bundled model files are not there yet
    "rhythm-1lead": dict(
        family="resnet",
        classes=["N", "A", "O", "~"],
        normal=["N"],
        unreadable=["~"],
        rate=300,
        window=9000,
        leads=("II",),
    ),
    "normal-12lead": dict(
        family="resnet",
        classes=["Normal", "Abnormal"],
        normal=["Normal"],
        unreadable=[],
        rate=100,
        window=1000,
        leads=("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"),
    ),
}


# --- models -------------------------------------------------------------------------------------------------------


def _bundled_metadata(name: str):
    from ecg_shared.model_metadata import ModelMetadata
    from ecg_shared.settings import get_settings

    path = get_settings().models_dir / f"{name}.onnx"
    if not path.exists():
        return None
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return ModelMetadata.from_onnx_props(props)


def build_models(folder: Path) -> list[str]:
    """``<name>.onnx`` (the bundled file, else the Keras network exported) and ``<name>.keras`` (the network of the
    same family, random weights) for both bundled models; returns notes."""
    from ecg_shared.model_metadata import ModelMetadata
    from ecg_shared.preprocessing import PreprocessingSpec
    from ecg_shared.settings import get_settings
    from ecg_training.export import to_onnx
    from ecg_training.families import build_model

    notes = []
    for name, default in DEFAULT_SPECS.items():
        metadata = _bundled_metadata(name)
        if metadata is None:
            metadata = ModelMetadata(
                name=name,
                family=default["family"],
                classes=default["classes"],
                normal_classes=default["normal"],
                unreadable_classes=default["unreadable"],
                preprocessing=PreprocessingSpec(default["rate"], default["window"], default["leads"]),
            )
            notes.append(
                f"{name}: bundled model not found; {default['family']} at {default['rate']} Hz, "
                f"{default['window']} samples, leads {', '.join(default['leads'])}"
            )
        else:
            spec = metadata.preprocessing
            fused = " fused with beat features" if metadata.features is not None else ""
            notes.append(
                f"{name}: the bundled model ({metadata.family}{fused}, {spec.window_samples} samples at "
                f"{spec.sampling_rate:g} Hz); Flask: its network's family, window and classes"
            )
        spec = metadata.preprocessing
        model = build_model(metadata.family, len(spec.leads), len(metadata.classes), spec.window_samples)
        model.save(folder / f"{name}.keras")
        bundled = get_settings().models_dir / f"{name}.onnx"
        if bundled.exists():
            shutil.copyfile(bundled, folder / f"{name}.onnx")
        else:
            (folder / f"{name}.onnx").write_bytes(to_onnx(model, metadata))
        notes[-1] += f"; {model.count_params():,} network parameters"
    return notes


# --- recordings ---------------------------------------------------------------------------------------------------


def recordings(n_each: int = 8) -> dict[str, list[tuple[str, bytes]]]:
    """Uploads: ``single`` (CinC 2017 WFDB zips), ``twelve`` (PTB-XL zips and the Wellnest blob), ``wellnest``."""
    from ecg_shared.formats import zip_wfdb_record
    from ecg_shared.settings import get_settings

    data = get_settings().data_dir
    cinc = sorted((data / "cinc2017").glob("A0*.hea"))[:n_each]
    ptbxl = sorted((data / "ptbxl").glob("*_lr.hea"))[: n_each - 1]
    wellnest = data / "wellnest" / "sample-10s.raw"
    if not cinc or not ptbxl or not wellnest.exists():
        raise RuntimeError(f"data sets not found under {data} (set ECG_DATA_DIR)")
    blob = ("sample-10s.raw", wellnest.read_bytes())
    return {
        "single": [(h.stem + ".zip", zip_wfdb_record(h)) for h in cinc],
        "twelve": [(h.stem + ".zip", zip_wfdb_record(h)) for h in ptbxl] + [blob],
        "wellnest": [blob],
    }


# --- processes ----------------------------------------------------------------------------------------------------


def _python_path() -> str:
    """This checkout first, then the PYTHONPATH the benchmark runs with: a worktree's services are its own code, not
    the editable installs' (which point at one checkout)."""
    return os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(argv: list[str], env: dict[str, str], port: int, log: Path, timeout: float = 120) -> subprocess.Popen:
    process = subprocess.Popen(
        argv,
        env={**os.environ, **env},
        cwd=REPO_ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited ({process.returncode}): {log.read_text()[-1500:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.2)
    stop(process)
    raise RuntimeError(f"{' '.join(argv[:3])} did not listen on {port} within {timeout} s")


def stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds so far of a process and its live descendants (Linux ``/proc``): a service with its
    worker processes."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, cpu seconds)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += stats.get(current, (0, 0.0))[1]
        todo += [child for child, (parent, _) in stats.items() if parent == current]
    return total


def load_measuring_cpu(
    url: str, concurrency: int, duration_s: float, max_requests: int, payloads, services: dict[str, int]
) -> dict[str, Any]:
    """:func:`load`, plus the CPU the ``services`` (name -> pid) spent per completed request meanwhile
    (``<name>_cpu_ms``): unlike throughput on a machine that other work shares, the CPU a request costs does not
    depend on how busy the machine is."""
    before = {name: tree_cpu_s(pid) for name, pid in services.items()}
    measured = load(url, concurrency, duration_s, max_requests, payloads)
    done = max(measured["completed"], 1)
    for name, pid in services.items():
        measured[f"{name}_cpu_ms"] = (tree_cpu_s(pid) - before[name]) * 1000 / done
    return measured


def load(
    url: str, concurrency: int, duration_s: float, max_requests: int, payloads: list[tuple[str, bytes]], warmup: int = 4
) -> dict[str, Any]:
    """Run the load generator in its own process; returns its measurement."""
    with tempfile.NamedTemporaryFile(suffix=".pickle", delete=False) as f:
        pickle.dump(payloads, f)
    try:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.classify",
                "load",
                url,
                str(concurrency),
                str(duration_s),
                str(max_requests),
                f.name,
                str(warmup),
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=duration_s * 4 + 120,
            env={**os.environ, "PYTHONPATH": _python_path()},
        )
    finally:
        os.unlink(f.name)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-1500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def build_request(url: str, name: str, data: bytes) -> bytes:
    """The whole HTTP/1.1 request (headers and multipart body with the file), built once per payload."""
    parts = urlsplit(url)
    boundary = "ecgbench" + hashlib.sha1(data).hexdigest()[:16]
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    head = (
        f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: multipart/form-data; boundary={boundary}"
        f"\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class HttpConnection:
    """One keep-alive HTTP/1.1 connection over asyncio streams: send prepared request bytes, read the answer
    (Content-Length, chunked, or until close, which HTTP/1.0 servers such as Flask's do); reconnects when closed."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        version, status = status_line.split(" ", 2)[:2]
        headers = dict(line.lower().split(": ", 1) for line in lines if ": " in line)
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int((await self.reader.readuntil(b"\r\n")).strip().split(b";")[0], 16):
                body += (await self.reader.readexactly(size + 2))[:-2]
            await self.reader.readuntil(b"\r\n")
        else:
            body = await self.reader.read()
        if headers.get("connection") == "close" or (
            version == "HTTP/1.0" and headers.get("connection") != "keep-alive"
        ):
            self.close()
        return int(status), body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def _server_total_ms(body: bytes) -> float | None:
    """The service's ``timings.total_ms`` from its JSON answer, without parsing the whole answer."""
    at = body.rfind(b'"total_ms":')
    if at < 0:
        return None
    end = at + 11
    while end < len(body) and body[end : end + 1] not in b",}":
        end += 1
    return float(body[at + 11 : end])


def _load_main(
    url: str, concurrency: int, duration_s: float, max_requests: int, payload_file: str, warmup: int
) -> None:
    """The load generator: ``concurrency`` connections, each sending its next request when the last is answered.
    Requests are built once, so the client's CPU per request is a socket write and a read (reported as
    ``client_cpu_ms``); latency is from writing the request to having read the whole answer."""
    payloads = pickle.loads(Path(payload_file).read_bytes())
    requests = [build_request(url, name, data) for name, data in payloads]
    parts = urlsplit(url)

    async def main() -> dict[str, Any]:
        connections = [HttpConnection(parts.hostname, parts.port) for _ in range(concurrency)]
        for i in range(warmup):
            await connections[0].request(requests[i % len(requests)])
        latencies: list[float] = []
        errors: dict[str, int] = {}
        server_ms: list[float] = []  # the service's own timings.total_ms (body received to answer built)
        counter = iter(range(max_requests))
        deadline = time.perf_counter() + duration_s

        async def worker(connection: HttpConnection) -> None:
            for i in counter:
                if time.perf_counter() > deadline:
                    return
                t = time.perf_counter()
                try:
                    status, body = await connection.request(requests[i % len(requests)])
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:  # dropped connection: a failure
                    connection.close()
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    continue
                if status == 200:
                    latencies.append((time.perf_counter() - t) * 1000)
                    total_ms = _server_total_ms(body)
                    if total_ms is not None:
                        server_ms.append(total_ms)
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1

        cpu = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in connections))
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu
        for connection in connections:
            connection.close()
        done = len(latencies) + sum(errors.values())
        return {
            "completed": len(latencies),
            "errors": errors,
            "wall_s": wall,
            "latencies_ms": latencies,
            "server_ms": server_ms,
            "client_cpu_ms": cpu * 1000 / max(done, 1),
        }

    print(json.dumps(asyncio.run(main())))


def _flask_main(port: int, models_dir: str) -> None:
    """The original design: Flask, one Keras ``model.predict`` per request and model, same preprocessing."""
    import keras
    import onnx
    from flask import Flask, jsonify, request

    from ecg_shared.formats import EcgFormatError, read_ecg
    from ecg_shared.model_metadata import ModelMetadata
    from ecg_shared.preprocessing import prepare

    models = []
    for path in sorted(Path(models_dir).glob("*.keras")):
        props = {p.key: p.value for p in onnx.load(str(path.with_suffix(".onnx"))).metadata_props}
        models.append((ModelMetadata.from_onnx_props(props), keras.models.load_model(path)))
    app = Flask("flask-keras")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    @app.post("/classify")
    def classify():
        upload = request.files["file"]
        data = upload.read()
        try:
            record = read_ecg(io.BytesIO(data))
        except EcgFormatError as exc:
            return jsonify({"detail": str(exc)}), 422
        answer = []
        for metadata, model in models:
            leads = metadata.preprocessing.leads
            if not ((len(leads) == 1 and record.n_leads == 1) or all(lead in record.lead_names for lead in leads)):
                continue
            probabilities = model.predict(prepare(record, metadata.preprocessing), verbose=0).mean(axis=0)
            answer.append(
                {
                    "name": metadata.name,
                    "probabilities": dict(zip(metadata.classes, map(float, probabilities), strict=True)),
                }
            )
        return jsonify({"models": answer})

    app.run(host="127.0.0.1", port=port, threaded=True)


# --- measurements -------------------------------------------------------------------------------------------------


def _row(
    target: str, recordings_kind: str, concurrency: int, measured: dict[str, Any], round_: int = 1
) -> dict[str, Any]:
    latencies = np.asarray(measured["latencies_ms"]) if measured["latencies_ms"] else np.asarray([np.nan])
    row = {
        "target": target,
        "recordings": recordings_kind,
        "concurrency": concurrency,
        "round": round_,
        "requests": measured["completed"],
        "errors": sum(measured["errors"].values()),
        "throughput_rps": round(measured["completed"] / measured["wall_s"], 1),
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p95_ms": round(float(np.percentile(latencies, 95)), 2),
        "p99_ms": round(float(np.percentile(latencies, 99)), 2),
        "server_p50_ms": round(float(np.median(measured["server_ms"])), 2) if measured.get("server_ms") else None,
        "client_cpu_ms": round(measured["client_cpu_ms"], 2) if "client_cpu_ms" in measured else None,
    }
    for key in ("server_cpu_ms", "gateway_cpu_ms", "inference_cpu_ms"):
        if key in measured:
            row[key] = round(measured[key], 2)
    print(json.dumps(row), file=sys.stderr, flush=True)  # progress
    return row


def _ratio(a: float, b: float, digits: int = 3) -> float | None:
    return round(a / b, digits) if b and b == b and a == a else None


def raw_onnxruntime(
    models_dir: Path, payloads: list[tuple[str, bytes]], concurrency: int, duration_s: float
) -> dict[str, Any]:
    """The ceiling: the service's own sessions on already prepared inputs (windows and beat features),
    ``concurrency`` requests per call, each session with an intra-op thread per usable CPU (the service shares the
    CPUs out among its worker processes)."""
    from ecg_inference.classify import model_applies, prepare_run, read_upload, run_batched
    from ecg_inference.cpus import usable_cpus
    from ecg_inference.models import load_bundled

    with overridden_setting("ECG_ONNX_THREADS", str(usable_cpus())):
        models = load_bundled(models_dir)
    prepared = []
    for name, data in payloads:
        record = read_upload(data, name)
        prepared.append(
            [(m, prepare_run(m, record, None)[0].inputs) for m in models.models.values() if model_applies(m, record)]
        )
    latencies, completed, i = [], 0, 0
    deadline = time.perf_counter() + duration_s
    started = time.perf_counter()
    cpu = time.process_time()  # this process, onnxruntime's threads included
    while time.perf_counter() < deadline:
        group = [prepared[(i + k) % len(prepared)] for k in range(concurrency)]
        i += concurrency
        t = time.perf_counter()
        for model in models.models.values():
            arrays = [x for request in group for m, x in request if m is model]
            if arrays:
                run_batched(model, arrays)
        latencies += [(time.perf_counter() - t) * 1000] * concurrency
        completed += concurrency
    return {
        "completed": completed,
        "errors": {},
        "wall_s": time.perf_counter() - started,
        "latencies_ms": latencies,
        "server_cpu_ms": (time.process_time() - cpu) * 1000 / max(completed, 1),
    }


# Stages of the per-request work, as (file suffix, function) whose cumulative time the profile reports.
STAGES = {
    "onnxruntime": ("ecg_inference/models.py", "predict"),
    "read (formats)": ("ecg_inference/classify.py", "read_upload"),
    "heart rate (neurokit2)": ("ecg_shared/heart.py", "heart_rate"),
    "beat features (sleepecg)": ("ecg_shared/beats.py", "recording_features"),
    "quality check": ("ecg_shared/quality.py", "assess_quality"),
    "filter + resample": ("ecg_shared/preprocessing.py", "clean"),
    "windows + normalise": ("ecg_shared/preprocessing.py", "window_batch"),
    "answer (schemas, JSON)": ("ecg_inference/classify.py", "build_response"),
}


def profile_hot_path(
    models_dir: Path, payloads: list[tuple[str, bytes]], seconds: float = 4.0
) -> tuple[str, dict[str, float]]:
    """cProfile of the service's per-request work in process (read, prepare, onnxruntime, answer; no HTTP): the
    top functions by own time, and each stage's share of the profiled time."""
    from ecg_inference.classify import classify_prepared, prepare_recording, read_upload
    from ecg_inference.models import load_bundled

    models = load_bundled(models_dir)
    for name, data in payloads[:4]:  # first calls import neurokit2 and warm the sessions: not the hot path
        classify_prepared([prepare_recording(read_upload(data, name), models, explain=False)], [time.perf_counter()])
    profiler = cProfile.Profile()
    deadline = time.perf_counter() + seconds
    i = 0
    started_all = time.perf_counter()
    profiler.enable()
    while time.perf_counter() < deadline:
        name, data = payloads[i % len(payloads)]
        i += 1
        started = time.perf_counter()
        record = read_upload(data, name)
        prepared = prepare_recording(record, models, explain=False)
        classify_prepared([prepared], [started])[0].model_dump_json()
    profiler.disable()
    elapsed = time.perf_counter() - started_all
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    shares = {}
    for stage, (suffix, function) in STAGES.items():
        cumulative = sum(
            value[3]
            for (filename, _, funcname), value in stats.stats.items()  # type: ignore[attr-defined]
            if funcname == function and filename.endswith(suffix)
        )
        shares[stage] = round(cumulative / elapsed, 3)
    stats.sort_stats("tottime").print_stats(14)
    text = out.getvalue()
    header = f"{i} requests in {elapsed:.1f} s ({elapsed / max(i, 1) * 1000:.1f} ms each), by own time:\n"
    return header + text[text.find("ncalls") :].rstrip(), shares


def run(
    quick: bool = False, duration_s: float | None = None, concurrencies: list[int] | None = None, rounds: int = 3
) -> dict[str, Any]:
    """``concurrencies`` (default 1, 8, 32, 128) and ``duration_s`` shorten a run, e.g. ``--arg
    classify.concurrencies=[1,32] --arg classify.duration_s=4``; the ratios need 32. ``rounds``: measure the
    Wellnest p50 and, at c=32, the gateway, the inference service and raw onnxruntime that many times, in turn
    (Flask once); each ratio is then the median of the rounds' ratios, each round's contestants measured minutes
    apart at most, which a machine whose speed drifts needs."""
    duration_s = duration_s or (4.0 if quick else 10.0)
    concurrencies = tuple(concurrencies or CONCURRENCY)
    work = Path(tempfile.mkdtemp(prefix="bench-classify-"))
    logs = REPO_ROOT / "test-artifacts" / "logs"  # git-ignored, beside the test suite's service logs
    logs.mkdir(parents=True, exist_ok=True)
    models_dir = work / "models"
    models_dir.mkdir()
    notes = build_models(models_dir)
    uploads = recordings()
    mix = [p for pair in zip(uploads["single"], uploads["twelve"], strict=False) for p in pair]
    rows: list[dict[str, Any]] = []
    processes: dict[str, subprocess.Popen] = {}
    env = {
        "ECG_INFERENCE_MODEL_SOURCE": "bundled",
        "ECG_MODELS_DIR": str(models_dir),
        "ECG_LOG_LEVEL": "WARNING",
        "PYTHONPATH": _python_path(),
    }
    try:
        inference_port = free_port()
        processes["inference"] = start(
            [
                sys.executable,
                "-m",
                "ecg_inference",
                "--port",
                str(inference_port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env,
            inference_port,
            logs / "classify-inference.log",
        )
        inference_url = f"http://127.0.0.1:{inference_port}"
        targets = {"inference": f"{inference_url}/classify?explain=false"}
        try:
            gateway_port = free_port()
            processes["gateway"] = start(
                [
                    sys.executable,
                    "-m",
                    "ecg_gateway",
                    "--port",
                    str(gateway_port),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                {**env, "ECG_INFERENCE_URL": inference_url},
                gateway_port,
                logs / "classify-gateway.log",
            )
            targets = {"gateway": f"http://127.0.0.1:{gateway_port}/classify?explain=false", **targets}
        except Exception as exc:  # the gateway is another service: measure the rest without it
            notes.append(f"gateway skipped: {exc}")
        flask_port = free_port()
        processes["flask"] = start(
            [sys.executable, "-m", "bench.classify", "flask", str(flask_port), str(models_dir)],
            {**env, "TF_CPP_MIN_LOG_LEVEL": "2"},
            flask_port,
            logs / "classify-flask.log",
        )
        targets["flask+keras"] = f"http://127.0.0.1:{flask_port}/classify"

        # p50 at concurrency 1 for a 10 s 12-lead recording (Wellnest, 500 Hz), preprocessing included.
        for round_ in range(1, rounds + 1):
            for explain in ("false", "true") if round_ == 1 else ("false",):
                url = f"{inference_url}/classify?explain={explain}"
                measured = load(url, 1, duration_s, 2000, uploads["wellnest"])
                target = "inference" + (" +explain" if explain == "true" else "")
                rows.append(_row(target, "wellnest 12-lead 10 s", 1, measured, round_))
        for concurrency in concurrencies:
            for round_ in range(1, (rounds if concurrency == 32 else 1) + 1):
                for target, url in targets.items():
                    if target == "flask+keras" and round_ > 1:
                        continue
                    limit = 200 if target == "flask+keras" else 20000
                    # whose CPU serves this target: the gateway's requests cost the gateway and inference
                    served_by = {"gateway": ("gateway", "inference"), "inference": ("inference",)}.get(target, ())
                    services = {name: processes[name].pid for name in served_by}
                    measured = load_measuring_cpu(url, concurrency, duration_s, limit, mix, services)
                    rows.append(_row(target, "mix", concurrency, measured, round_))
                measured = raw_onnxruntime(models_dir, mix, concurrency, duration_s)
                rows.append(_row("raw onnxruntime", "mix", concurrency, measured, round_))
        rows.append(
            _row(
                "inference +explain",
                "mix",
                32,
                load(f"{inference_url}/classify?explain=true", 32, duration_s, 20000, mix),
            )
        )
        profile, shares = profile_hot_path(models_dir, mix, seconds=2.0 if quick else 4.0)
    finally:
        for process in processes.values():
            stop(process)
        shutil.rmtree(work, ignore_errors=True)

    def throughput(target: str, concurrency: int, round_: int = 1) -> float:
        return next(
            (
                r["throughput_rps"]
                for r in rows
                if r["target"] == target
                and r["concurrency"] == concurrency
                and r["recordings"] == "mix"
                and r["round"] == round_
            ),
            float("nan"),
        )

    def ratio(a: str, b: str, digits: int = 3) -> float | None:
        """The median over the rounds of ``a``'s throughput at c=32 over ``b``'s in the same round."""
        values = [_ratio(throughput(a, 32, k), throughput(b, 32, k), 6) for k in range(1, rounds + 1)]
        values = [v for v in values if v is not None]
        return round(float(np.median(values)), digits) if values else None

    p50_c1 = float(
        np.median([r["p50_ms"] for r in rows if r["target"] == "inference" and r["recordings"].startswith("wellnest")])
    )
    ratios = {
        "inference / raw onnxruntime throughput at c=32": ratio("inference", "raw onnxruntime"),
        "inference / flask+keras throughput at c=32": _ratio(
            throughput("inference", 32), throughput("flask+keras", 32), 1
        ),
        "gateway / inference throughput at c=32": ratio("gateway", "inference"),
        "explain / no explain throughput at c=32": _ratio(
            throughput("inference +explain", 32), throughput("inference", 32)
        ),
    }

    def cpu_ms(target: str, key: str) -> float:
        """The median over the rounds of ``key`` in ``target``'s c=32 rows."""
        values = [r.get(key) for r in rows if r["target"] == target and r["concurrency"] == 32 and r.get(key)]
        return float(np.median(values)) if values else float("nan")

    inference_cpu = cpu_ms("inference", "inference_cpu_ms")
    gateway_cpu = cpu_ms("gateway", "gateway_cpu_ms")
    raw_cpu = cpu_ms("raw onnxruntime", "server_cpu_ms")
    ratios["CPU per request at c=32, ms: inference service / gateway itself / raw onnxruntime"] = (
        f"{inference_cpu:.2f} / {gateway_cpu:.2f} / {raw_cpu:.2f}"
    )
    # On CPUs that everything shares, throughput goes as 1 / the CPU a request costs: these ratios, computed from
    # the CPU, do not move with the other work on the machine as the throughput ratios do.
    ratios["gateway / inference at c=32, from CPU per request"] = _ratio(inference_cpu, inference_cpu + gateway_cpu)
    ratios["inference / raw onnxruntime at c=32, from CPU per request"] = _ratio(raw_cpu, inference_cpu)
    if rounds > 1:
        for name, (a, b) in {
            "gateway / inference": ("gateway", "inference"),
            "inference / raw onnxruntime": ("inference", "raw onnxruntime"),
        }.items():
            each = [_ratio(throughput(a, 32, k), throughput(b, 32, k)) for k in range(1, rounds + 1)]
            ratios[f"{name} at c=32, each round"] = ", ".join(str(v) for v in each)
    gateway_ratio = ratios["gateway / inference throughput at c=32"] or 0
    ceiling_ratio = ratios["inference / raw onnxruntime throughput at c=32"] or 0
    flask_ratio = ratios["inference / flask+keras throughput at c=32"] or 0
    targets_table = [
        {"target": "gateway >= 0.85 of inference at c=32", "measured": gateway_ratio, "met": gateway_ratio >= 0.85},
        {
            "target": "inference >= 0.55 of raw onnxruntime at c=32",
            "measured": ceiling_ratio,
            "met": ceiling_ratio >= 0.55,
        },
        {"target": ">= 20x flask+keras at c=32", "measured": flask_ratio, "met": flask_ratio >= 20},
        {
            "target": "p50 at c=1 < 10 ms (10 s 12-lead, preprocessing included; median over the rounds)",
            "measured": round(p50_c1, 2),
            "met": p50_c1 < 10,
        },
    ]
    slowest = max((stage for stage in shares if stage != "onnxruntime"), key=shares.get)
    notes.append(
        "where the time goes in process (share of the per-request time, mix, no HTTP): "
        + ", ".join(f"{stage} {share:.0%}" for stage, share in shares.items())
        + f". Next bottleneck after onnxruntime itself: {slowest} ({shares[slowest]:.0%})."
    )
    notes += [
        "mix: alternating single-lead CinC 2017 records (WFDB zips, 300 Hz, 9-61 s) and 12-lead PTB-XL records "
        "(WFDB zips, 100 Hz, 10 s) plus the Wellnest recording (500 Hz, 10 s); 12-lead recordings go through both "
        "models (the rhythm model on lead I), as in the service.",
        "raw onnxruntime: the service's sessions (same graph and options, but an intra-op thread per CPU) on "
        "already prepared inputs, c requests at a time, in calls of the model's batch limit (8 windows on CPU, "
        "256 on CUDA, as in the service; no HTTP, no preprocessing); latency = the duration of those c requests' "
        "calls.",
        "flask+keras: Flask's threaded server, keras model.predict per request and model, same preprocessing, "
        "bounded to 200 requests per level.",
        "server_p50_ms: the inference service's own timings.total_ms (body received to answer built); the rest of "
        "p50_ms is HTTP, queueing before the body is read, and the client. The profile's shares come from cProfile, "
        "which overstates pure-Python stages (reading, neurokit2) against onnxruntime's C++.",
        "explanations are off except in the '+explain' rows (occlusion over 1 s segments and every lead).",
        f"rounds: {rounds}; with several, the Wellnest p50 and the c=32 gateway, inference and raw onnxruntime rows "
        "are measured once per round, in turn, and the c=32 ratios are the median of the rounds' ratios (each round's "
        "own ratios are listed too).",
        f"the load generator runs in its own process on the same {os.cpu_count()} CPUs as the servers, as do other "
        "jobs on a shared machine: compare ratios within this run. It sends prebuilt requests over keep-alive "
        "connections (asyncio streams; Flask's HTTP/1.0 server closes each one, so there it reconnects); "
        "client_cpu_ms is its own CPU per request (an httpx client took about 2.2 ms, which the servers lost).",
        "inference_cpu_ms and gateway_cpu_ms (c=32 rows): the CPU (user + system, all worker processes) each service "
        "spent per completed request during the row; server_cpu_ms of raw onnxruntime: its process's CPU per "
        "request. The ratios 'from CPU per request' divide these (gateway: inference's CPU over inference's plus "
        "the gateway's), which a busy machine leaves standing where it moves throughput.",
    ]
    return {
        "name": "classify",
        "title": "Classification service",
        "rows": rows,
        "ratios": ratios,
        "targets": targets_table,
        "notes": notes,
        "profile": profile,
        "stage_shares": shares,
    }


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "flask":
        _flask_main(int(sys.argv[2]), sys.argv[3])
    elif command == "load":
        url, concurrency, duration, max_requests, payload_file, warmup = sys.argv[2:8]
        _load_main(url, int(concurrency), float(duration), int(max_requests), payload_file, int(warmup))
    else:
        raise SystemExit(f"unknown command {command!r}: flask PORT MODELS_DIR | load URL C SECONDS MAX FILE WARMUP")
