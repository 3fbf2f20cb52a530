"""Prometheus metrics of what the service answers, per model version, for drift monitoring (docs/deploy.md):

- ``ecg_inference_p_abnormal{model, version}``: histogram of ``p_abnormal`` over the ten buckets of
  :mod:`ecg_shared.drift` (compared with the validation split's on the /models page);
- ``ecg_inference_calls_total{model, version, call}``: normal / abnormal / unreadable calls, and ``not_judged``
  for answers on leads the model cannot read (``models[].not_judged``; left out of the histogram);
- ``ecg_inference_verdicts_total{verdict, quality}``: the combined verdict, and whether the quality check found the
  recording usable.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from ecg_shared.drift import BUCKET_EDGES
from ecg_shared.schemas import ClassifyResponse

NOT_JUDGED = "not_judged"
P_ABNORMAL = Histogram(
    "ecg_inference_p_abnormal", "p_abnormal of each answered model call", ["model", "version"], buckets=BUCKET_EDGES
)
CALLS = Counter("ecg_inference_calls_total", "Calls per model version", ["model", "version", "call"])
VERDICTS = Counter("ecg_inference_verdicts_total", "Combined verdicts and quality", ["verdict", "quality"])


def record_answer(answer: ClassifyResponse) -> None:
    for result in answer.models:
        version = str(result.version) if result.version is not None else "bundled"
        if result.not_judged is not None:  # it read a lead it cannot read: counted, but its p_abnormal means nothing
            CALLS.labels(result.name, version, NOT_JUDGED).inc()
            continue
        P_ABNORMAL.labels(result.name, version).observe(result.p_abnormal)
        CALLS.labels(result.name, version, result.call).inc()
    quality = "usable" if answer.recording.quality.usable else "unusable"
    VERDICTS.labels(answer.verdict.label, quality).inc()
