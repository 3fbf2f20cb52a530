"""Benchmarks of the platform (issue 8): ``make bench`` / ``python -m bench [--quick]``.

Each benchmark is a module here with ``run(...) -> dict`` — ``{"name": ..., "rows": [{...}, ...], "notes": ...}``
and optionally ``"ratios"`` (name -> value) and ``"targets"`` — that compares against a baseline in the same run:

- ``bench.ingestion``: recordings/second from Azurite into Postgres, job vs the one-at-a-time baseline (CinC 2017
  WFDB records, two blobs each); ``bench.ingestion_wellnest`` the same with Wellnest blobs, one each;
- ``bench.classify``: throughput and latency of gateway, inference service, raw onnxruntime, Flask + Keras;
- ``bench.training``: the streamed training input's peak RSS and samples/second against the model step and the
  in-memory layout, and one epoch per model family;
- ``bench.formats``: read time per clinical file format, in ms per 10 s 12-lead recording, against WFDB.

The runner (``bench/__main__.py``) runs each in its own process, then ``bench/report.py`` writes
``bench/results/latest.json`` and ``latest.md`` (machine, versions, each benchmark's rows and ratios) and the
README's Benchmarks section.
"""

BENCHMARKS = ("ingestion", "ingestion_wellnest", "classify", "training", "formats")
