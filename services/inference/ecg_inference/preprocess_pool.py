"""Reading and preparing uploads in worker processes.

Reading (wfdb, the format readers) and preparing (quality, neurokit2's R-peaks, scipy filtering, windows) are
mostly Python, so on threads they share the service process's GIL with the event loop, the multipart parser and
the answers, and the service uses about one core whatever the load. Here they run in ``ECG_PREPROCESS_WORKERS``
processes (0: one per usable CPU) while the service process keeps the event loop, the micro-batcher, onnxruntime,
the metrics and the registry watcher whole.

- A task carries the upload's bytes and the :class:`~ecg_inference.models.ModelSpec` of the request's model set
  (a few hundred bytes), so a worker holds no model state and a hot reload can never leave it with stale specs. It
  returns a :class:`~ecg_inference.classify.PreparedRecording` (the model inputs, no signal, no session).
- Processes come from a fork server that imports this module and neurokit2 once, so starting (or replacing) a
  worker is a fork, not a fresh interpreter. :meth:`PreprocessPool.start` starts and warms them in the background
  once the models are loaded (a few seconds on 2 busy cores): the service listens meanwhile, and a request arriving
  before they are up waits for them.
- A worker that dies breaks the whole executor (``BrokenProcessPool``): the pool is replaced, the request retried
  once on the new one, and answered 503 if that breaks too; no request waits forever.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from ecg_inference.classify import ClassificationError, PreparedRecording, prepare_with_specs
from ecg_inference.models import ModelSpec, usable_cpus
from ecg_inference.request_body import ClassifyInput

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0


def prepare_upload(given: ClassifyInput, specs: list[ModelSpec], explain_segment_s: float | None) -> PreparedRecording:
    """In a worker: read the upload and prepare it for ``specs``."""
    import time

    started = time.perf_counter()
    record = given.to_record()
    read_ms = (time.perf_counter() - started) * 1000
    return prepare_with_specs(record, specs, explain_segment_s, read_ms)


def warm_up() -> int:
    """In a worker: first calls (filter designs, neurokit2's code paths) before the first request; returns its pid."""
    import os

    import numpy as np

    from ecg_shared.heart import detect_rpeaks

    t = np.arange(0, 5, 1 / 250)
    detect_rpeaks(np.sin(2 * np.pi * 1.2 * t) ** 15, 250)
    return os.getpid()


class PreprocessPool:
    """A process pool for :func:`prepare_upload` that replaces itself when a worker dies."""

    def __init__(self, workers: int = 0) -> None:
        self.workers = workers if workers > 0 else usable_cpus()
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__, "neurokit2"])
        self._context = context
        self._executor = self._new_executor()
        self._starting: asyncio.Future | None = None
        self._lock = threading.Lock()  # the warm-up thread and the event loop may both replace a broken pool

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=self._context)

    def start(self) -> None:
        """Start every worker and warm it up, in the background."""
        self._starting = asyncio.get_running_loop().create_task(asyncio.to_thread(self._warm_up))

    def _warm_up(self) -> None:
        """On a thread: the first worker waits for the fork server's imports, which must not stall the event loop.
        Bounded: a pool that cannot start is logged and replaced; requests retry on the new one."""
        executor = self._executor
        try:
            for future in [executor.submit(warm_up) for _ in range(self.workers)]:
                future.result(timeout=START_TIMEOUT_S)
        except (BrokenProcessPool, TimeoutError) as exc:
            log.warning("preprocessing processes did not start: %s", exc or type(exc).__name__)
            self._replace(executor)

    async def prepare(
        self, given: ClassifyInput, specs: list[ModelSpec], explain_segment_s: float | None
    ) -> PreparedRecording:
        loop = asyncio.get_running_loop()
        for _ in range(2):
            executor = self._executor
            try:
                return await loop.run_in_executor(executor, prepare_upload, given, specs, explain_segment_s)
            except BrokenProcessPool:
                self._replace(executor)
        raise ClassificationError(503, "the preprocessing processes failed twice on this request; try again")

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is not broken:  # the first to notice replaced it; the others retry on the new one
                return
            log.warning("a preprocessing process died; starting a new pool")
            broken.shutdown(wait=False, cancel_futures=True)
            self._executor = self._new_executor()

    async def close(self) -> None:
        """Stop the workers once their current tasks (milliseconds) or their start are done; queued tasks are
        cancelled."""
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        if self._starting is not None:
            await asyncio.gather(self._starting, return_exceptions=True)
