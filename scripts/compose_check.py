"""The checks of `make compose-test` (scripts/compose-test.sh) on the running compose stack, through the gateway.

    compose_check.py images --run cold|warm IMAGE=SECONDS ...
                                                sizes and build times of the images -> bench/results/images.{json,md}
    compose_check.py flow ...                   classify the Wellnest sample with the bundled models, then the demo
                                                (scripts/demo.py): upload to the compose Azurite, ingest, train,
                                                promote, classify with the new version; what it made goes to --state
    compose_check.py kept                       after `docker compose restart`: the recordings, the promoted version
                                                and its ONNX file are still there and it still answers
    compose_check.py scaled                     with two inference and two ingestion containers: classification works

Each check exits 1 with the reason on the first thing that is not as it should be.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from ecg_shared.settings import get_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results"
README = REPO_ROOT / "README.md"
START_MARKER, END_MARKER = "<!-- images:start -->", "<!-- images:end -->"
TENSORFLOW_PROBE = "import importlib.util, sys; sys.exit(importlib.util.find_spec('tensorflow') is not None)"


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def load_demo():
    spec = importlib.util.spec_from_file_location("ecg_demo", REPO_ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- images ----------------------------------------------------------------------------------------------------------


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=120).stdout.strip()


def images(pairs: list[str], run: str) -> None:
    """Sizes and this run's build times; bench/results/images.json keeps the latest cold and the latest warm run."""
    rows = []
    for pair in sorted(pairs):
        image, _, seconds = pair.rpartition("=")
        size = int(docker("image", "inspect", "--format", "{{.Size}}", image))
        rows.append({"image": image, "size_mb": round(size / 1e6), "build_s": int(seconds)})
    inference = next((r for r in rows if r["image"] == "ecg-inference:latest"), None)
    if inference:
        probe = subprocess.run(
            ["docker", "run", "--rm", "--network", "none", "ecg-inference:latest", "python", "-c", TENSORFLOW_PROBE],
            capture_output=True,
            timeout=120,
        )
        if probe.returncode != 0:
            fail("the inference image holds TensorFlow")
        inference["tensorflow"] = False
    measured = datetime.now(UTC).isoformat(timespec="seconds")
    engine = docker("version", "--format", "{{.Server.Version}}")
    path = RESULTS / "images.json"
    runs = json.loads(path.read_text()).get("runs", {}) if path.exists() else {}
    runs[run] = {"measured": measured, "engine": engine, "images": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"command": "make compose-test", "runs": runs}, indent=2) + "\n")
    lines = write_images_table(runs)
    text = README.read_text()
    if START_MARKER in text and END_MARKER in text and inference:
        head, rest = text.split(START_MARKER, 1)
        tail = rest.split(END_MARKER, 1)[1]
        line = (
            f"The inference image (`docker/inference.Dockerfile`: onnxruntime, no TensorFlow) is "
            f"{inference['size_mb']:,} MB (measured {measured[:10]} by `make compose-test`; every image, with build "
            "times: bench/results/images.md)."
        )
        README.write_text(f"{head}{START_MARKER}\n{line}\n{END_MARKER}{tail}")
    print("\n".join(lines))


def write_images_table(runs: dict, path: Path = RESULTS / "images.md") -> list[str]:
    """Write ``path`` (bench/results/images.md) from the kept runs: each image's size as the latest run measured it
    (the one the README quotes), and both runs' build times. Returns the table's lines."""
    seconds = {kind: {r["image"]: r["build_s"] for r in runs[kind]["images"]} for kind in runs}
    names = sorted({r["image"] for kind in runs for r in runs[kind]["images"]})
    by_time = sorted(runs, key=lambda kind: runs[kind]["measured"])  # the latest run last, its sizes kept
    sizes = {r["image"]: r["size_mb"] for kind in by_time for r in runs[kind]["images"]}
    lines = [
        f"| image | size (MB), {by_time[-1]} run | build (s), cold | build (s), warm |",
        "| --- | --- | --- | --- |",
        *(
            f"| `{name}` | {sizes[name]:,} | {seconds.get('cold', {}).get(name, '–')} | "
            f"{seconds.get('warm', {}).get(name, '–')} |"
            for name in names
        ),
    ]
    when = "; ".join(f"{kind} run {runs[kind]['measured']} (engine {runs[kind]['engine']})" for kind in sorted(runs))
    note = (
        f"Measured by `make compose-test` ({when}). Cold: the engine's image store and BuildKit cache empty (every"
        " base image and layer built, every package downloaded); warm: a rerun, every layer found in the cache."
        " `ecg-standin/*` are the stand-in base images built where no registry can be reached (docs/deploy.md);"
        " the service images' sizes include their base (the stand-in Python image where one was used)."
    )
    path.write_text("# Image sizes and build times\n\n" + note + "\n\n" + "\n".join(lines) + "\n")
    return lines


# --- the stack -------------------------------------------------------------------------------------------------------


def client(gateway: str) -> httpx.Client:
    settings = get_settings()
    if not settings.api_key:
        fail("no ECG_API_KEY (scripts/init-env.sh writes one to .env)")
    return httpx.Client(base_url=gateway, headers={"X-API-Key": settings.api_key.get_secret_value()}, timeout=120)


def wellnest_sample() -> Path:
    path = get_settings().data_dir / "wellnest" / "sample-10s.raw"
    if not path.exists():
        fail(f"{path} not found: set ECG_DATA_DIR to the folder holding wellnest/ and ptbxl/")
    return path


def classify(http: httpx.Client, model: str | None = None) -> dict:
    sample = wellnest_sample()
    response = http.post(
        "/classify", params={"model": model} if model else None, files={"file": (sample.name, sample.read_bytes())}
    )
    if response.status_code != 200:
        fail(f"POST /classify{f'?model={model}' if model else ''}: HTTP {response.status_code} {response.text[:300]}")
    answer = response.json()
    if not answer.get("models"):
        fail(f"POST /classify answered with no model: {answer}")
    return answer


def serves(http: httpx.Client, model: str, version: int, within_s: float = 90) -> dict:
    deadline = time.monotonic() + within_s
    while True:
        answer = classify(http, model)
        served = [m for m in answer["models"] if m["name"] == model]
        if served and served[0]["version"] == version:
            return served[0]
        if time.monotonic() > deadline:
            fail(f"{model} v{version} not served within {within_s:.0f} s: {answer['models']}")
        time.sleep(2)


def flow(http: httpx.Client, options: argparse.Namespace) -> None:
    answer = classify(http)
    names = ", ".join(f"{m['name']} v{m['version']} {m['predicted_class']}" for m in answer["models"])
    print(f"[compose-check] the Wellnest sample, bundled models: {names}; verdict {answer['verdict']['label']}")
    demo = load_demo()
    demo.main(
        [
            "--gateway",
            options.gateway,
            "--api-key",
            get_settings().api_key.get_secret_value(),
            "--blob-endpoint",
            options.blob_endpoint,
            "--worker-blob-endpoint",
            options.worker_blob_endpoint,
            "--records",
            str(options.records),
            "--epochs",
            "2",
            "--timeout",
            "900",
        ]
    )
    model = http.get(f"/api/models/{demo.MODEL_NAME}").json()
    if model.get("active_version") is None:
        fail(f"the demo's model {demo.MODEL_NAME} has no active version: {model}")
    ingestion = http.get("/api/ingestion-jobs").json()["jobs"][0]
    dataset = ingestion["dataset"]
    total = http.get("/api/recordings", params={"dataset": dataset, "limit": 1}).json()["total"]
    if total == 0 or ingestion["status"] != "succeeded":
        fail(f"ingestion job {ingestion['id']} {ingestion['status']}, {total} recordings of {dataset}")
    state = {"model": demo.MODEL_NAME, "version": model["active_version"], "dataset": dataset, "recordings": total}
    options.state.write_text(json.dumps(state))
    print(f"[compose-check] flow done: {state}")


def kept(http: httpx.Client, state: dict) -> None:
    total = http.get("/api/recordings", params={"dataset": state["dataset"], "limit": 1}).json()["total"]
    if total != state["recordings"]:
        fail(f"after the restart {total} recordings of {state['dataset']}, {state['recordings']} before")
    model = http.get(f"/api/models/{state['model']}").json()
    if model.get("active_version") != state["version"]:
        active = model.get("active_version")
        fail(f"after the restart {state['model']} has active version {active}, {state['version']} before")
    served = serves(http, state["model"], state["version"])
    print(
        f"[compose-check] after the restart: {total} recordings of {state['dataset']}, {state['model']} "
        f"v{served['version']} active and answering ({served['predicted_class']})"
    )


def scaled(http: httpx.Client, state: dict) -> None:
    for _ in range(6):
        serves(http, state["model"], state["version"])
    print(f"[compose-check] scaled: 6 classifications with {state['model']} v{state['version']} answered")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway", default="http://127.0.0.1:8000")
    parser.add_argument("--state", type=Path, default=REPO_ROOT / "var" / "compose-test" / "state.json")
    sub = parser.add_subparsers(dest="check", required=True)
    report = sub.add_parser("images")
    report.add_argument("--run", choices=["cold", "warm"], required=True, help="was the build cache empty?")
    report.add_argument("pairs", nargs="+", metavar="IMAGE=SECONDS")
    run = sub.add_parser("flow")
    run.add_argument("--blob-endpoint", required=True)
    run.add_argument("--worker-blob-endpoint", required=True)
    run.add_argument("--records", type=int, default=60)
    sub.add_parser("kept")
    sub.add_parser("scaled")
    options = parser.parse_args(argv)
    if options.check == "images":
        images(options.pairs, options.run)
        return 0
    with client(options.gateway) as http:
        if options.check == "flow":
            flow(http, options)
        else:
            state = json.loads(options.state.read_text())
            (kept if options.check == "kept" else scaled)(http, state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
