"""Reading and preparing uploads in worker processes.

Reading (wfdb, the format readers) and preparing (quality, neurokit2's R-peaks, scipy filtering, windows) are
mostly Python, so on threads they share the service process's GIL with the event loop, the multipart parser and
the answers, and the service uses about one core whatever the load. Here they run in ``ECG_PREPROCESS_WORKERS``
processes (0: one per usable CPU) while the service process keeps the event loop, the micro-batcher, onnxruntime,
the metrics and the registry watcher whole.

- A task carries the upload's bytes and the :class:`~ecg_inference.models.ModelSpec` of the request's model set
  (a few hundred bytes), so a worker holds no model state and a hot reload can never leave it with stale specs. It
  returns a :class:`~ecg_inference.classify.PreparedRecording` (the model inputs, no signal, no session).
- Each worker is connected to the service by a socket pair that the event loop reads and writes itself (a length
  prefix, then a pickle): no executor threads between the request and the worker. ``ProcessPoolExecutor`` took
  three (the submitter's wake-up, its manager thread, its queue feeder), each hand-off a GIL switch; they cost the
  service process about a third of its own CPU per request at concurrency 32. A worker gets at most
  :data:`PIPELINE_DEPTH` tasks at a time (the next one waits in its socket, so it never idles for a round trip);
  the rest queue in the service and go to whichever worker frees up first.
- Processes come from a fork server that imports this module and neurokit2 once, so starting (or replacing) a
  worker is a fork, not a fresh interpreter. :meth:`PreprocessPool.start` starts them in the background once the
  models are loaded (a few seconds on 2 busy cores); each warms up before reading its first task. The service
  listens meanwhile, and a request arriving before they are up waits for them.
- A worker that dies (its socket closes) is replaced; each of its tasks is retried once on another worker and
  answered 503 if that one dies too, so no request waits forever.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import multiprocessing
import pickle
import socket
import traceback
from dataclasses import dataclass, field

from ecg_inference.classify import ClassificationError, PreparedRecording, prepare_with_specs
from ecg_inference.models import ModelSpec, usable_cpus
from ecg_inference.request_body import ClassifyInput

log = logging.getLogger(__name__)

PIPELINE_DEPTH = 2  # tasks sent to a worker before its first answer: the second is read as soon as it is free
ATTEMPTS = 2  # a task whose worker dies is retried once
START_TIMEOUT_S = 60.0
_HEADER = 8  # bytes of the big-endian length before each message


def prepare_upload(given: ClassifyInput, specs: list[ModelSpec], explain_segment_s: float | None) -> PreparedRecording:
    """In a worker: read the upload and prepare it for ``specs``."""
    import time

    started = time.perf_counter()
    record = given.to_record()
    read_ms = (time.perf_counter() - started) * 1000
    return prepare_with_specs(record, specs, explain_segment_s, read_ms)


def warm_up() -> None:
    """In a worker: first calls (filter designs, neurokit2's code paths) before the first request."""
    import numpy as np

    from ecg_shared.heart import detect_rpeaks

    t = np.arange(0, 5, 1 / 250)
    detect_rpeaks(np.sin(2 * np.pi * 1.2 * t) ** 15, 250)


class RemoteError(RuntimeError):
    """An unexpected exception in a worker, with the worker's traceback as its message."""


def _recv_exactly(sock: socket.socket, n: int) -> bytes | None:
    buffer = bytearray(n)
    view, got = memoryview(buffer), 0
    while got < n:
        read = sock.recv_into(view[got:])
        if not read:
            return None
        got += read
    return bytes(buffer)


def _frame(message: object) -> list[bytes]:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return [len(payload).to_bytes(_HEADER, "big"), payload]


def serve(sock: socket.socket) -> None:
    """A worker's loop: read a task, answer ``(True, PreparedRecording)`` or ``(False, exception)``, until the
    service closes its end."""
    warm_up()
    while (header := _recv_exactly(sock, _HEADER)) is not None:
        payload = _recv_exactly(sock, int.from_bytes(header, "big"))
        if payload is None:
            return
        try:
            answer: tuple[bool, object] = (True, prepare_upload(*pickle.loads(payload)))
        except ClassificationError as exc:
            answer = (False, exc)
        except Exception:
            answer = (False, RemoteError(traceback.format_exc()))
        sock.sendall(b"".join(_frame(answer)))


@dataclass
class _Task:
    payload: list[bytes]
    future: asyncio.Future
    attempts: int = 0


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    writer: asyncio.StreamWriter
    in_flight: collections.deque[_Task] = field(default_factory=collections.deque)


class PreprocessPool:
    """Worker processes for :func:`prepare_upload`, fed by the event loop; a dead one is replaced."""

    def __init__(self, workers: int = 0) -> None:
        self.workers = workers if workers > 0 else usable_cpus()
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__, "neurokit2"])
        self._context = context
        self._workers: list[_Worker] = []  # the live ones
        self._pending: collections.deque[_Task] = collections.deque()
        self._background: set[asyncio.Task] = set()
        self._closing = False

    def start(self) -> None:
        """Start every worker, in the background."""
        for _ in range(self.workers):
            self._spawn()

    def _spawn(self) -> None:
        task = asyncio.get_running_loop().create_task(self._start_worker())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _start_worker(self) -> None:
        ours, theirs = socket.socketpair()
        process = self._context.Process(target=serve, args=(theirs,), daemon=True, name="ecg-preprocess")
        try:
            # The first start waits for the fork server's imports: on a thread, so the event loop keeps serving.
            await asyncio.wait_for(asyncio.to_thread(process.start), START_TIMEOUT_S)
        except Exception as exc:
            log.warning("a preprocessing process did not start: %s", exc or type(exc).__name__)
            ours.close()
            if not self._closing:
                await asyncio.sleep(1.0)
                self._spawn()
            return
        finally:
            theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours)
        worker = _Worker(process, writer)
        if self._closing:
            writer.close()
            return
        self._workers.append(worker)
        reading = asyncio.get_running_loop().create_task(self._read(worker, reader))
        self._background.add(reading)
        reading.add_done_callback(self._background.discard)
        self._dispatch()

    async def prepare(
        self, given: ClassifyInput, specs: list[ModelSpec], explain_segment_s: float | None
    ) -> PreparedRecording:
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Task(_frame((given, specs, explain_segment_s)), future))
        self._dispatch()
        return await future

    def _dispatch(self) -> None:
        """Send pending tasks to the least busy workers that have room."""
        while self._pending and self._workers:
            worker = min(self._workers, key=lambda w: len(w.in_flight))
            if len(worker.in_flight) >= PIPELINE_DEPTH:
                return
            task = self._pending.popleft()
            if task.future.done():  # the request was cancelled while it waited
                continue
            task.attempts += 1
            worker.in_flight.append(task)
            worker.writer.writelines(task.payload)

    async def _read(self, worker: _Worker, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                header = await reader.readexactly(_HEADER)
                ok, result = pickle.loads(await reader.readexactly(int.from_bytes(header, "big")))
                task = worker.in_flight.popleft()
                if not task.future.done():
                    if ok:
                        task.future.set_result(result)
                    else:
                        task.future.set_exception(result)
                self._dispatch()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        self._lost(worker)

    def _lost(self, worker: _Worker) -> None:
        """The worker's socket closed: retry its tasks elsewhere (once), replace it, reap it off the loop."""
        self._workers.remove(worker)
        worker.writer.close()
        reap = asyncio.get_running_loop().create_task(asyncio.to_thread(worker.process.join, 5))
        self._background.add(reap)
        reap.add_done_callback(self._background.discard)
        if self._closing:
            return
        log.warning("a preprocessing process died; starting a new one")
        for task in reversed(worker.in_flight):
            if task.attempts >= ATTEMPTS:
                if not task.future.done():
                    task.future.set_exception(
                        ClassificationError(503, "the preprocessing processes failed twice on this request; try again")
                    )
            else:
                self._pending.appendleft(task)
        worker.in_flight.clear()
        self._spawn()
        self._dispatch()

    async def close(self) -> None:
        """Stop the workers once their current tasks (milliseconds) or their start are done; queued tasks are
        cancelled."""
        self._closing = True
        for task in self._pending:
            task.future.cancel()
        self._pending.clear()
        in_flight = [task.future for worker in self._workers for task in worker.in_flight]
        if in_flight:
            await asyncio.wait(in_flight, timeout=START_TIMEOUT_S)
        for worker in list(self._workers):
            worker.writer.close()  # the worker reads the end of its socket and returns
        for _ in range(3):  # starts, readers, then the reaping their ends start
            if self._background:
                await asyncio.wait(list(self._background), timeout=START_TIMEOUT_S)
