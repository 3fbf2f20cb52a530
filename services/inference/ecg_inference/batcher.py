"""Micro-batching: model inputs of requests that arrive together go to onnxruntime in one call.

While a model's batch runs, new requests queue and leave together as soon as it finishes, so under load batches grow
by themselves and an idle model adds no wait. A request that finds its model idle waits ``wait_ms`` for others
(0: none). A call holds at most the model's batch limit of inputs (windows; ECG_BATCH_MAX_SIZE, by default 256 on
CUDA and 8 on CPU, where larger batches measured no cheaper per window). Calls run on threads of their own, one
call per model at a time, where onnxruntime releases the GIL, so the worker's event loop goes on preparing meanwhile.

Short requests first: a request with more inputs than one call holds (a long recording, or an explanation's occluded
copies) is cut into slices of the batch limit, queued behind the short requests; each call takes the short requests
that wait before the next slice, so a short request waits for at most one slice, never for a whole long request.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import Histogram

from ecg_inference.classify import run_batched
from ecg_inference.models import LoadedModel, ModelInputs

log = logging.getLogger(__name__)

BATCH_ROWS = Histogram(
    "ecg_inference_batch_rows",
    "Model inputs (windows) per onnxruntime call",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
BATCH_REQUESTS = Histogram(
    "ecg_inference_batch_requests", "Requests sharing one onnxruntime call", buckets=(1, 2, 4, 8, 16, 32, 64, 128)
)


MAX_CONCURRENT_CALLS = 4  # models served side by side (two today); more models' calls take turns


@dataclass
class _Queue:
    items: list[tuple[np.ndarray, asyncio.Future]] = field(default_factory=list)  # short requests
    slices: list[tuple[np.ndarray, asyncio.Future]] = field(default_factory=list)  # of long requests, after them
    rows: int = 0
    busy: bool = False
    timer: asyncio.TimerHandle | None = None


class MicroBatcher:
    def __init__(self, wait_ms: float, max_size: int | None = None) -> None:
        self.max_size = max_size  # None: each model's own batch limit
        self.wait_s = max(0.0, wait_ms) / 1000
        self._queues: dict[LoadedModel, _Queue] = {}
        # A model has at most one call running; different models' calls may run side by side.
        self._executor = ThreadPoolExecutor(max_workers=MAX_CONCURRENT_CALLS, thread_name_prefix="onnxruntime")

    async def run(self, model: LoadedModel, inputs: ModelInputs | np.ndarray) -> np.ndarray:
        """Probabilities for ``inputs`` (n rows of model inputs: windows, and features for a fused model), computed
        in a batch with whatever else is waiting."""
        return await self.submit(model, inputs)

    def submit(self, model: LoadedModel, inputs: ModelInputs | np.ndarray) -> asyncio.Future:
        """Queue ``inputs`` and return the future of their probabilities at once; when the model is idle (and
        ``wait_ms`` is 0) its call starts now, so the caller can go on working while onnxruntime runs. Call it on
        the event loop's thread."""
        loop = asyncio.get_running_loop()
        queue = self._queues.setdefault(model, _Queue())
        limit = self._limit(model)
        if len(inputs) <= limit:
            future: asyncio.Future = loop.create_future()
            queue.items.append((inputs, future))
        else:
            parts = [(inputs[i : i + limit], loop.create_future()) for i in range(0, len(inputs), limit)]
            queue.slices.extend(parts)
            future = _joined(loop, [part for _, part in parts])
        queue.rows += len(inputs)
        if not queue.busy:
            if queue.rows >= self._limit(model) or self.wait_s == 0:
                self._flush(model)
            elif queue.timer is None:
                queue.timer = loop.call_later(self.wait_s, self._flush, model)
        return future

    def _limit(self, model: LoadedModel) -> int:
        return max(1, self.max_size or model.batch_limit)

    def _flush(self, model: LoadedModel) -> None:
        queue = self._queues.get(model)
        if queue is None or queue.busy or not (queue.items or queue.slices):
            return
        if queue.timer is not None:
            queue.timer.cancel()
            queue.timer = None
        batch, rows, taken = [], 0, 0
        limit = self._limit(model)
        for waiting in (queue.items, queue.slices):
            while waiting and (not batch or rows + len(waiting[0][0]) <= limit):
                inputs, future = waiting.pop(0)
                taken += len(inputs)
                if future.done():  # its request was cancelled (client went away): skip its inputs
                    continue
                batch.append((inputs, future))
                rows += len(inputs)
        queue.rows -= taken
        if not batch:
            self._queues.pop(model, None)
            return
        queue.busy = True
        BATCH_ROWS.observe(rows)
        BATCH_REQUESTS.observe(len(batch))
        loop = asyncio.get_running_loop()
        task = loop.run_in_executor(self._executor, run_batched, model, [inputs for inputs, _ in batch], limit)
        task.add_done_callback(lambda done: self._finish(model, batch, done))

    def _finish(self, model: LoadedModel, batch: list, done: asyncio.Future) -> None:
        queue = self._queues[model]
        queue.busy = False
        error = done.exception()
        if error is not None:
            log.error("onnxruntime call for %s failed: %s", model.name, error)
        for i, (_, future) in enumerate(batch):
            if future.done():  # the request was cancelled (client went away)
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(done.result()[i])
        if queue.items or queue.slices:
            self._flush(model)
        else:
            self._queues.pop(model, None)  # lets a replaced model version be garbage collected

    def close(self) -> None:
        """Stop the onnxruntime threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)


def _joined(loop: asyncio.AbstractEventLoop, parts: list[asyncio.Future]) -> asyncio.Future:
    """One future for the probabilities of a long request's slices, in order; cancelling it cancels the slices."""
    joined: asyncio.Future = loop.create_future()
    gathered = asyncio.gather(*parts)

    def done(_) -> None:
        if joined.done():
            return
        if gathered.cancelled():
            joined.cancel()
        elif gathered.exception() is not None:
            joined.set_exception(gathered.exception())
        else:
            joined.set_result(np.concatenate(gathered.result()))

    gathered.add_done_callback(done)
    joined.add_done_callback(lambda future: future.cancelled() and gathered.cancel())
    return joined
