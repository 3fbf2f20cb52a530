"""All configuration in one place.

Every field is read from an environment variable named ``ECG_<FIELD>`` (upper case), or from a ``.env`` file in the
working directory. The README lists each variable; ``tests/deploy/test_documentation.py`` keeps the two in step.
Services import :func:`get_settings` and never read ``os.environ`` themselves.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import ByteSize, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]

# The Azurite development account: a well-known public key, documented by Microsoft, not a secret.
AZURITE_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ECG_", env_file=".env", extra="ignore")

    # --- Infrastructure -------------------------------------------------------------------------------------------
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/ecg"
    redis_url: str = "redis://127.0.0.1:6379/0"
    data_dir: Path = Field(default=REPO_ROOT.parent / "shared" / "data")
    log_level: str = "INFO"

    # --- Record formats -------------------------------------------------------------------------------------------
    # Counts per millivolt of the Wellnest device. The vendor apps divide by 124.1, which yields R waves of 8-16 "mV"
    # on real recordings (ten times physiological); 1241 counts/mV gives normal amplitudes. See docs/formats.md.
    wellnest_gain: float = 1241.0
    # Blobs with more than this fraction of corrupt frames are rejected.
    wellnest_max_bad_fraction: float = 0.01
    # Recordings shorter than this (seconds) are rejected by the readers and the quality check.
    min_duration_s: float = 2.0
    # The most a zip or .npz record may expand to (bytes), checked before inflating it: 64 MiB hold 90 minutes of
    # 12-lead, 500 Hz, 16-bit ECG. Larger archives (zip bombs among them) are refused with the reason.
    max_unzipped_bytes: int = 64 * 1024 * 1024

    # --- Signal processing ----------------------------------------------------------------------------------------
    powerline_hz: float = 50.0

    # --- HTTP services (gateway, inference): slow clients ------------------------------------------------------------
    # A request's head (request line and headers) must arrive within http_header_timeout_s of the connection (or of
    # its first byte on a kept-alive connection), its body within http_body_timeout_s of the head; else 408 and the
    # connection is closed (ecg_shared/http_server.py).
    http_header_timeout_s: float = 10.0
    http_body_timeout_s: float = 120.0

    # --- Inference service (services/inference) and `ecg classify` ------------------------------------------------
    # Where the service gets its models: "registry" (active versions, hot reloaded) or "bundled" (models_dir).
    inference_model_source: Literal["registry", "bundled"] = "registry"
    # How often (seconds) the service checks the registry for newly promoted or archived versions.
    model_poll_interval_s: float = 5.0
    # onnxruntime execution providers in order of preference; those this onnxruntime build lacks are skipped.
    onnx_providers: str = "CUDAExecutionProvider,CPUExecutionProvider"
    # onnxruntime intra-op threads per session (0: the usable CPUs shared out among the service's worker processes).
    onnx_threads: int = 0
    # Worker processes of the inference service, each serving requests start to finish (0: one per usable CPU).
    inference_workers: int = 0
    # Micro-batching: most model inputs (windows) per onnxruntime call (0: 256 on CUDA, 8 on CPU, where larger
    # batches cost no less per window), and how long (ms) a request that finds its model
    # idle waits for others to join (0: it goes at once; requests arriving while a call runs batch anyway).
    batch_max_size: int = 0
    batch_wait_ms: float = 0.0
    # (The upload limit, max_upload_bytes, is shared with the gateway: see its block.)
    # Shortest recording (seconds) a model classifies (or its window, when shorter); shorter ones get 422.
    classify_min_duration_s: float = 5.0
    # Occlusion explanations by default (the `explain` query parameter overrides), and their time resolution.
    explain: bool = True
    explain_segment_s: float = 1.0
    # Explanations cost one model input per lead and window: recordings longer than this (seconds) are classified
    # without one, and the answer's explanation_note says so.
    explain_max_duration_s: float = 300.0
    # Recordings longer than this (seconds) are prepared one at a time per worker process, on a thread of their own,
    # and their model inputs go to onnxruntime after shorter requests' (in slices of the batch limit), so short
    # requests are answered quickly while long ones run.
    long_recording_s: float = 120.0

    # --- Artifact store (ONNX files of registered models) ---------------------------------------------------------
    # An Azure Storage connection string; the default is the Azurite emulator on its standard port.
    artifact_connection_string: SecretStr = SecretStr(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={AZURITE_ACCOUNT_KEY};BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    )
    artifact_container: str = "models"
    models_dir: Path = Field(default=REPO_ROOT / "models")

    # --- Training worker ------------------------------------------------------------------------------------------
    # A running job refreshes its heartbeat this often (seconds) and checks for cancellation as often.
    training_heartbeat_s: float = 10.0
    # A running job whose heartbeat is older than this (seconds) lost its worker: the training workers queue it again,
    # to resume from its last epoch's checkpoint, or mark it failed once it used training_max_attempts.
    training_stale_after_s: float = 45.0
    # How many times a job is started before a lost worker makes it fail for good.
    training_max_attempts: int = 2
    # Where the worker keeps each recording cleaned once (ecg_training.cache), by preprocessing spec; safe to delete.
    training_cache_dir: Path = Field(default=Path.home() / ".cache" / "ecg-training")
    # At most this much in it (bytes, or "50GiB", "500MB"; 0: no limit). Once a job has its data, the least recently
    # used chunks of the specs no running job uses are deleted until the cache fits (ecg_training.cache.evict).
    training_cache_max_size: ByteSize = ByteSize(50 * 2**30)
    # Threads that read and crop training batches (and evaluation windows) ahead of the model. 1: one tf.data
    # prefetch thread (fastest on 2 shared cores); more: a Keras PyDataset thread pool, for machines with spare cores.
    training_input_workers: int = 1

    # --- Gateway (services/gateway): public API, upload page, forwarding ------------------------------------------
    inference_url: str = "http://127.0.0.1:8001"
    # Key for state-changing endpoints (header X-API-Key). Unset: those endpoints answer 503 (not configured).
    api_key: SecretStr | None = None
    classify_requires_key: bool = False
    max_upload_bytes: int = 20 * 1024 * 1024
    # Seconds the gateway waits for the inference service to connect / to answer before giving up with 503.
    inference_connect_timeout_s: float = 2.0
    inference_timeout_s: float = 30.0
    # Seconds the gateway waits for the promotion gate (inference scoring two versions on the evaluation data).
    gate_timeout_s: float = 300.0
    # Samples at most (all leads together) in a trace sent to the browser for plotting; longer ones are resampled.
    plot_max_points: int = 60000
    # Paper of the printable PDF report (POST /classify/report), landscape: "a4" (297 x 210 mm) or "letter".
    report_paper: Literal["a4", "letter"] = "a4"

    # --- Ingestion (services/ingestion): Azure Blob Storage -> Postgres --------------------------------------------
    # Fernet key (Fernet.generate_key()) encrypting the storage credential of queued ingestion jobs until they finish.
    # Unset: queued jobs are refused (foreground `ecg ingest` keeps the credential in memory only).
    secret_key: SecretStr | None = None
    # Blob downloads in flight per job, recordings per INSERT batch, decoding processes (0: one per CPU core).
    ingest_concurrency: int = 32
    ingest_batch_size: int = 200
    ingest_decode_workers: int = 0
    # A running job refreshes its heartbeat this often (seconds). One whose heartbeat is older than ingest_stale_after_s
    # lost its worker: the ingestion workers queue it again (or fail it, see ingest_max_attempts).
    ingest_heartbeat_s: float = 10.0
    ingest_stale_after_s: float = 45.0
    # Attempts at a job: an outage (database or storage unreachable) or a lost worker ends one, and the job goes on
    # with the next (after 5, 10, 20, 40, 60 ... s for an outage) until they are used up; then it fails with the reason.
    ingest_max_attempts: int = 5
    # Defaults for `ecg ingest` / `ecg dataset upload`, so secrets stay out of shell history.
    ingest_sas_token: SecretStr | None = None
    ingest_connection_string: SecretStr | None = None

    @field_validator("training_cache_dir")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        """``~`` in ECG_TRAINING_CACHE_DIR is the home of the user running the worker."""
        return value.expanduser()


@lru_cache
def get_settings() -> Settings:
    return Settings()


@contextmanager
def overridden_setting(name: str, value: str) -> Iterator[None]:
    """The setting ``name`` (an ECG_* variable) is ``value`` inside the block, for this process and the children it
    starts, as it was after (benchmarks and test fixtures)."""
    previous = os.environ.get(name)
    os.environ[name] = value
    get_settings.cache_clear()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous
        get_settings.cache_clear()
