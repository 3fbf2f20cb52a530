"""The one Celery application. Queues: ``ingestion`` (ecg_ingestion.worker) and ``training`` (ecg_training.worker).

Producers (the gateway, ``ecg ... --queue``) send tasks by name with :func:`enqueue`, so they never import a worker's
heavy dependencies (TensorFlow). Workers import this app and register their tasks on it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from celery import Celery
from celery.signals import worker_process_init

from ecg_shared.logs import quiet_azure_http_logs
from ecg_shared.settings import get_settings

log = logging.getLogger(__name__)

INGESTION_QUEUE = "ingestion"
TRAINING_QUEUE = "training"


def make_celery() -> Celery:
    settings = get_settings()
    app = Celery("ecg", broker=settings.redis_url, backend=None)
    app.conf.update(
        task_acks_late=True,  # a task whose worker dies is redelivered, not lost
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # long jobs: take one at a time
        task_default_queue=INGESTION_QUEUE,
        broker_connection_retry_on_startup=True,
        # Redis hands an unacknowledged task out again after this long, even while its worker still runs it: the
        # tasks tell such duplicates from lost jobs by the job's heartbeat. Jobs whose worker died are not left to
        # it: each worker's reaper (reap_periodically) queues them again within seconds.
        broker_transport_options={"visibility_timeout": 3600},
    )
    return app


celery_app = make_celery()
quiet_azure_http_logs()  # the workers' INFO logs would carry every artifact download's headers


def enqueue(task_name: str, queue: str, *args, **kwargs) -> str:
    """Send a task by name; returns the Celery task id."""
    return celery_app.send_task(task_name, args=args, kwargs=kwargs, queue=queue).id


def reap_periodically(name: str, interval_s: float, reap: Callable[[], object]) -> threading.Event:
    """Call ``reap`` now and every ``interval_s`` seconds in a daemon thread (a worker's reaper of jobs whose worker
    is gone); errors are logged and the next round tries again. Set the returned event to stop it."""
    stop = threading.Event()

    def loop() -> None:
        while True:
            try:
                reap()
            except Exception:
                log.warning("%s: this round failed; trying again in %.0f s", name, interval_s, exc_info=True)
            if stop.wait(interval_s):
                return

    threading.Thread(target=loop, name=name, daemon=True).start()
    return stop


def reaper_interval_s(stale_after_s: float) -> float:
    """How often a reaper looks for jobs whose heartbeat is older than ``stale_after_s``."""
    return max(1.0, min(15.0, stale_after_s / 3))


@worker_process_init.connect
def _forget_inherited_connections(**_) -> None:
    """A forked pool process must not use the database connections of the worker's main process (its reaper's)."""
    from ecg_shared.db.session import forget_inherited_connections

    forget_inherited_connections()
