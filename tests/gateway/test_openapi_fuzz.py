"""Schemathesis against the gateway's own OpenAPI schema, on a real stack of its own (Procfile inference + gateway, a
fresh database with two tiny models): every operation, valid and invalid requests, with the API key, a bounded number
of examples each. No answer may be a server error, and every answer must be one the schema documents (status, content
type, body shape).

The stack has a database of its own: the generated requests promote, cancel and create at random, which must not
disturb the other gateway tests' registry and jobs.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.gateway.conftest import SECRET_KEY
from tests.inference.onnx_models import rhythm_metadata, tiny_model, twelve_lead_metadata
from tests.support.database import create_test_database, drop_test_database
from tests.support.stack import start_stack

API_KEY = "openapi-fuzz-key-0123456789"
EXAMPLES_PER_OPERATION = 40
# Left out: positive_data_acceptance (a schema cannot carry the cross-field rules the 422s name: "give either
# connection_string or sas_token"), allow_header_conformance (Starlette's 405 lists the methods of one route, not
# of every route on the path).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def fuzz_gateway(azurite) -> Iterator[str]:
    from ecg_shared import registry
    from ecg_shared.db import session_scope

    database = create_test_database()
    with session_scope(database) as session:
        for metadata in (rhythm_metadata(), twelve_lead_metadata()):
            row = registry.register_version(session, metadata, tiny_model(metadata), model_card={"data": "none"})
            registry.promote(session, row.name, row.version)
    try:
        with start_stack(
            ["inference", "gateway"],
            database_url=database,
            artifact_connection_string=azurite.connection_string,
            api_key=API_KEY,
            env={"ECG_SECRET_KEY": SECRET_KEY, "ECG_MAX_UPLOAD_BYTES": str(256 * 1024), "ECG_EXPLAIN": "false"},
        ) as stack:
            yield stack.url("gateway")
    finally:
        drop_test_database(database)


def _gateway_schema():
    """The schema the gateway serves at /openapi.json, built from its app (the cases are generated at collection; they
    are sent to the real stack's gateway over HTTP)."""
    from ecg_gateway.app import app

    return schemathesis.openapi.from_dict(app.openapi())


schema = _gateway_schema()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same cases every run: a failure in CI reproduces here
)
def test_gateway_answers_every_generated_request_as_its_schema_says(case, fuzz_gateway):
    case.call_and_validate(base_url=fuzz_gateway, headers={"X-API-Key": API_KEY}, checks=CHECKS, timeout=60)
