"""``python -m ecg_inference [uvicorn options]``: the inference service in ``ECG_INFERENCE_WORKERS`` processes.

Each worker process serves requests start to finish (reading, preparing, onnxruntime, the answer): most of that work
is Python, which one process runs on one core at a time, so the service scales over cores with processes, and no
request's data crosses between processes. uvicorn's supervisor shares the listening socket among them and replaces a
worker that dies; each closes connections whose request head or body is too slow to arrive
(:mod:`ecg_shared.http_server`). The options are uvicorn's (``--host``, ``--port``, ``--log-level``, ...);
``--workers`` overrides the setting. Prometheus metrics are kept per process in a fresh directory and summed by
``/metrics`` (``prometheus_client``'s multiprocess mode).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

from ecg_inference.cpus import worker_processes
from ecg_shared.http_server import serve

APP = "ecg_inference.app:app"
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client when a worker imports it


def workers_option(argv: list[str]) -> int | None:
    """The value of ``--workers N`` or ``--workers=N`` in ``argv``, if given."""
    for i, arg in enumerate(argv):
        if arg == "--workers" and i + 1 < len(argv):
            return int(argv[i + 1])
        if arg.startswith("--workers="):
            return int(arg.split("=", 1)[1])
    return None


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    workers = workers_option(argv)
    if workers is None:
        workers = worker_processes()
        argv += ["--workers", str(workers)]
    os.environ["ECG_INFERENCE_WORKERS"] = str(workers)  # the workers share the cores out by it (models.onnx_threads)
    metrics_dir = None
    if workers > 1:
        metrics_dir = tempfile.mkdtemp(prefix="ecg-inference-metrics-")
        os.environ[METRICS_DIR_VARIABLE] = metrics_dir
    try:
        serve(APP, argv, prog_name="python -m ecg_inference")
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
