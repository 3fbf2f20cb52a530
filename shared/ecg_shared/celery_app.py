"""The one Celery application. Queues: ``ingestion`` (ecg_ingestion.worker) and ``training`` (ecg_training.worker).

Producers (the gateway, ``ecg ... --queue``) send tasks by name with :func:`enqueue`, so they never import a worker's
heavy dependencies (TensorFlow). Workers import this app and register their tasks on it.
"""

from __future__ import annotations

from celery import Celery

from ecg_shared.logs import quiet_azure_http_logs
from ecg_shared.settings import get_settings

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
        broker_transport_options={"visibility_timeout": 6 * 3600},
    )
    return app


celery_app = make_celery()
quiet_azure_http_logs()  # the workers' INFO logs would carry every artifact download's headers


def enqueue(task_name: str, queue: str, *args, **kwargs) -> str:
    """Send a task by name; returns the Celery task id."""
    return celery_app.send_task(task_name, args=args, kwargs=kwargs, queue=queue).id
