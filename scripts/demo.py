"""`make demo`: the whole path on a running stack (`make dev` or `make up`), printing each step.

1. upload a PTB-XL slice to Azurite as Wellnest device blobs, with the Excel manifest (`ecg dataset upload`);
2. an ingestion job through the gateway (POST /api/ingestion-jobs), polled until the recordings are in Postgres;
3. a short training job through the gateway (POST /api/training-jobs), polled epoch by epoch;
4. the new model version promoted if the promotion gate passes (POST /api/models/NAME/versions/V/promote);
5. the real Wellnest device recording classified through POST /classify by the new version.

Against `make up` (Docker), the ingestion worker reaches Azurite by its service name: pass
`--worker-blob-endpoint http://azurite:10000/devstoreaccount1` (`make demo DEMO_ARGS="..."`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from ecg_shared.formats import STANDARD_12_LEADS
from ecg_shared.settings import AZURITE_ACCOUNT_KEY, get_settings

MODEL_NAME = "demo-normal-12lead"
LOCAL_AZURITE = "http://127.0.0.1:10000/devstoreaccount1"


def step(number: int, text: str) -> None:
    print(f"\n[{number}/5] {text}", flush=True)


def azurite_connection_string(blob_endpoint: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_ACCOUNT_KEY};"
        f"BlobEndpoint={blob_endpoint.rstrip('/')};"
    )


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def check(response: httpx.Response, what: str) -> dict:
    if response.status_code >= 400:
        fail(f"{what}: HTTP {response.status_code}: {response.text[:500]}")
    return response.json()


def wait_for_job(client: httpx.Client, path: str, timeout: float, show) -> dict:
    """Poll a job until it is final; ``show`` prints what changed."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        job = check(client.get(path), f"GET {path}")
        summary = show(job, last)
        last = job
        if summary:
            print(f"    {summary}", flush=True)
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(1.0)
    fail(f"{path} did not finish within {timeout:.0f} s (is the worker running? `make dev` starts it)")
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway", default=os.environ.get("ECG_GATEWAY_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--api-key", default=None, help="default: ECG_API_KEY (from .env)")
    parser.add_argument("--data", type=Path, default=settings.data_dir / "ptbxl", help="folder of PTB-XL records")
    parser.add_argument(
        "--wellnest",
        type=Path,
        default=settings.data_dir / "wellnest" / "sample-10s.raw",
        help="the device recording to classify at the end",
    )
    parser.add_argument("--records", type=int, default=120, help="how many PTB-XL records to upload")
    parser.add_argument("--blob-endpoint", default=LOCAL_AZURITE, help="Azurite as this machine reaches it")
    parser.add_argument(
        "--worker-blob-endpoint",
        default=None,
        help="Azurite as the ingestion worker reaches it (default: --blob-endpoint)",
    )
    parser.add_argument("--family", default="cnn", choices=["cnn", "resnet", "inception"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for each job")
    options = parser.parse_args(argv)

    api_key = options.api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
    if not api_key:
        fail("no API key: set ECG_API_KEY in .env (the same one the gateway has) or pass --api-key")
    for path in (options.data, options.wellnest):
        if not path.exists():
            fail(f"{path} not found: set ECG_DATA_DIR to the folder holding ptbxl/ and wellnest/")
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    container, dataset = f"demo-{stamp}", f"demo-ptbxl-{stamp}"
    client = httpx.Client(base_url=options.gateway, headers={"X-API-Key": api_key}, timeout=60)

    try:
        ready = client.get("/readyz")
    except httpx.TransportError as exc:
        fail(f"the gateway at {options.gateway} does not answer ({exc}): start the stack with `make dev` first")
    print(f"gateway {options.gateway}: /readyz {ready.status_code} {ready.text[:200]}")

    step(
        1,
        f"upload {options.records} PTB-XL records from {options.data} to Azurite container {container!r} "
        "as Wellnest device blobs, with manifest.xlsx",
    )
    command = [
        "ecg",
        "dataset",
        "upload",
        str(options.data),
        "--container",
        container,
        "--format",
        "wellnest",
        "--limit",
        str(options.records),
    ]
    print("    $ ECG_INGEST_CONNECTION_STRING=<Azurite> " + " ".join(command), flush=True)
    env = {**os.environ, "ECG_INGEST_CONNECTION_STRING": azurite_connection_string(options.blob_endpoint)}
    ecg = Path(sys.executable).with_name("ecg")
    upload = subprocess.run([str(ecg) if ecg.exists() else "ecg", *command[1:]], env=env)
    if upload.returncode != 0:
        fail("the upload failed (is Azurite running on the --blob-endpoint?)")

    step(2, f"ingestion job via the gateway: container {container!r} -> dataset {dataset!r}")
    worker_endpoint = options.worker_blob_endpoint or options.blob_endpoint
    job = check(
        client.post(
            "/api/ingestion-jobs",
            json={
                "dataset": dataset,
                "container": container,
                "manifest": "manifest.xlsx",
                "format": "wellnest",
                "connection_string": azurite_connection_string(worker_endpoint),
            },
        ),
        "POST /api/ingestion-jobs",
    )
    print(f"    job {job['id']} {job['status']}")

    def ingestion_progress(job: dict, last: dict | None) -> str | None:
        keys = ("status", "listed", "stored", "skipped", "failed")
        if last and all(job[k] == last[k] for k in keys):
            return None
        return ", ".join(f"{k} {job[k]}" for k in keys)

    job = wait_for_job(client, f"/api/ingestion-jobs/{job['id']}", options.timeout, ingestion_progress)
    if job["status"] != "succeeded" or job["stored"] == 0:
        fail(f"ingestion job ended {job['status']}: {job.get('error') or job.get('failures')}")
    stored = check(client.get("/api/recordings", params={"dataset": dataset, "limit": 5}), "GET /api/recordings")
    print(
        f"    in Postgres now: {stored['total']} recordings of {dataset}; the newest: "
        + ", ".join(f"#{r['id']} {r['format']} {len(r['lead_names'])} leads {r['label']}" for r in stored["items"])
    )

    step(
        3,
        f"training job via the gateway: {options.family}, {options.epochs} epochs, 12 leads at 100 Hz, "
        f"model {MODEL_NAME!r}",
    )
    job = check(
        client.post(
            "/api/training-jobs",
            json={
                "dataset": dataset,
                "name": MODEL_NAME,
                "classes": ["Normal", "Abnormal"],
                "normal_classes": ["Normal"],
                "family": options.family,
                "epochs": options.epochs,
                "batch_size": 16,
                "window_s": 10,
                "sampling_rate": 100,
                "leads": list(STANDARD_12_LEADS),
            },
        ),
        "POST /api/training-jobs",
    )
    print(f"    job {job['id']} {job['status']}")

    def training_progress(job: dict, last: dict | None) -> str | None:
        if last and job["status"] == last["status"] and job.get("epoch") == last.get("epoch"):
            return None
        latest = (job.get("progress") or [{}])[-1]
        values = {"loss": latest.get("loss"), **latest.get("validation", {})}
        shown = ", ".join(f"{k} {v:.3g}" for k, v in values.items() if isinstance(v, float))
        return f"{job['status']}, epoch {job['epoch']}/{options.epochs} {shown}".rstrip()

    job = wait_for_job(client, f"/api/training-jobs/{job['id']}", options.timeout, training_progress)
    if job["status"] != "succeeded":
        fail(f"training job ended {job['status']}: {job.get('error')}")
    version = job["model_version"]
    primary, test = job["metrics"].get("primary", {}), job["metrics"].get("test", {})
    print(
        f"    registered {MODEL_NAME} version {version} (a candidate); on its held-out test split "
        f"(n={test.get('n')}): {primary.get('name')} {primary.get('value', float('nan')):.3f}, "
        f"accuracy {test.get('accuracy', float('nan')):.3f}"
    )

    step(4, f"promote {MODEL_NAME} version {version} if it passes the promotion gate")
    versions = f"/api/models/{MODEL_NAME}/versions/{version}"
    gate = check(client.get(f"{versions}/comparison", params={"evaluation": dataset}), "the promotion gate")
    print(f"    gate on dataset {dataset!r} (the job's own data): {gate['reason']}")
    if gate["passed"]:
        promoted = check(client.post(f"{versions}/promote", params={"evaluation": dataset}), "promote")
        print(f"    {MODEL_NAME} v{promoted['version']} is now {promoted['stage']}")
    else:
        version = gate["active"]["version"]
        print(f"    not promoted: v{version} stays active (promote with force=true to override the gate)")

    step(5, f"POST /classify with the real Wellnest device recording {options.wellnest.name}")
    deadline = time.monotonic() + 60
    while True:  # the inference service picks up the promotion within its poll interval
        response = client.post(
            "/classify",
            params={"model": MODEL_NAME},
            files={"file": (options.wellnest.name, options.wellnest.read_bytes())},
        )
        answer = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        served = [m for m in answer.get("models", []) if m["name"] == MODEL_NAME]
        if response.status_code == 200 and served and served[0]["version"] == version:
            break
        if time.monotonic() > deadline:
            fail(
                f"the inference service did not serve {MODEL_NAME} v{version} within 60 s: "
                f"HTTP {response.status_code} {response.text[:300]}"
            )
        time.sleep(1.0)
    model = served[0]
    probabilities = ", ".join(f"{k} {v:.3f}" for k, v in model["probabilities"].items())
    print(
        f"    {MODEL_NAME} v{model['version']}: {model['predicted_class']} ({probabilities}); "
        f"call {model['call']}; verdict {answer['verdict']['label']} ({answer['verdict']['rule']})"
    )
    print(
        f"    heart rate {answer['recording']['heart_rate_bpm']} bpm; total {answer['timings']['total_ms']:.1f} ms "
        f"on {', '.join(answer['timings']['providers'])}"
    )
    print("\ndemo finished: device blobs -> Postgres -> trained, registered, promoted model -> classification")
    return 0


if __name__ == "__main__":
    sys.exit(main())
