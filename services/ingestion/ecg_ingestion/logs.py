"""Logging for ingestion: secrets (SAS signatures, account keys) never reach a log line, and the Azure SDK's
per-request lines stay out of INFO logs."""

from __future__ import annotations

import logging
import traceback

from ecg_shared.jobs.ingestion import redact


class RedactSecrets(logging.Filter):
    """Rewrite a record's message (and traceback) with SAS token fields and account keys replaced by REDACTED."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        if record.exc_info:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)))
            record.exc_info = None
        return True


def install_redaction(logger: logging.Logger | None = None) -> None:
    """Add the filter to every handler of ``logger`` (default: the root logger); idempotent."""
    logger = logger or logging.getLogger()
    for handler in logger.handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())


def quiet_azure_logs() -> None:
    """Every Azure SDK logger at WARNING (the HTTP one among them: see ``ecg_shared.logs``)."""
    logging.getLogger("azure").setLevel(logging.WARNING)
