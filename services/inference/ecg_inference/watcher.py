"""Keeps the service's :class:`ModelSet` current: loads it at start and, from the registry, polls for promotions.

Polling reads :func:`ecg_shared.registry.registry_revision` (one small query) every ``model_poll_interval_s``; when
it changes, the new active versions are loaded beside the old ones and the reference is swapped in one assignment.
Requests hold the set they started with, so they finish on the old sessions.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Counter, Gauge

from ecg_inference.models import ModelSet, load_bundled, load_registry
from ecg_shared.settings import get_settings

log = logging.getLogger(__name__)

STARTUP_WAIT_S = 20.0

# With several worker processes, each loads the set itself: the value reported is the one set most recently.
MODELS_LOADED = Gauge(
    "ecg_inference_models_loaded", "Models the service currently serves", multiprocess_mode="mostrecent"
)
RELOADS = Counter("ecg_inference_model_reloads_total", "Model set loads", ["outcome"])


def current_revision() -> str:
    from ecg_shared.db import session_scope
    from ecg_shared.registry import registry_revision

    with session_scope() as session:
        return registry_revision(session)


class ModelWatcher:
    def __init__(self) -> None:
        settings = get_settings()
        self.source = settings.inference_model_source
        self.interval_s = settings.model_poll_interval_s
        self.current = ModelSet()
        self.last_error: str | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Load the models, waiting at most STARTUP_WAIT_S: a registry that hangs must not keep the service from
        starting (it answers 503 and /readyz says why until the models are in)."""
        first = asyncio.create_task(self.refresh(), name="first-model-load")
        try:
            await asyncio.wait_for(asyncio.shield(first), STARTUP_WAIT_S)
        except TimeoutError:
            log.warning("models not loaded after %s s; answering 503 until they are", STARTUP_WAIT_S)
            self.last_error = f"still loading the models from the {self.source}"
        # Bundled files load once; the registry is polled after the first load.
        self._task = (
            asyncio.create_task(self._poll(first), name="registry-poll") if self.source == "registry" else first
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def refresh(self) -> None:
        """Load the models if the registry changed (or from disk, once); failures keep the current set."""
        try:
            if self.source == "bundled":
                new = await asyncio.to_thread(load_bundled)
            else:
                revision = await asyncio.to_thread(current_revision)
                if revision == self.current.revision and self.current:
                    self.last_error = None
                    return
                new = await asyncio.to_thread(load_registry, self.current)
        except Exception as exc:  # database or blob store down, a broken file: keep serving what we have
            self.last_error = f"{type(exc).__name__}: {exc}"
            RELOADS.labels("failed").inc()
            log.warning("could not load models from the %s: %s", self.source, self.last_error)
            return
        self.last_error = "; ".join(f"{name} {error}" for name, error in new.errors.items()) or None
        if new.revision != self.current.revision:
            log.info("serving models %s (was %s)", new.revision or "none", self.current.revision or "none")
        self.current = new
        MODELS_LOADED.set(len(new.models))
        RELOADS.labels("loaded").inc()

    async def _poll(self, first: asyncio.Task) -> None:
        await first
        while True:
            await asyncio.sleep(self.interval_s)
            await self.refresh()
