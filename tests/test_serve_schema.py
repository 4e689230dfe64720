"""Property-based test of the server against its own OpenAPI schema (schemathesis + hypothesis).

uvicorn serves a tiny masked-LM model on 127.0.0.1 (a free port) in a background thread; for every
operation in /openapi.json, schemathesis generates requests from the schema (derandomised, a fixed
number of examples) and checks each answer: no 5xx, a status code the schema documents, the
documented content type, and a body that matches the documented response schema.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inference_fixtures as fx  # noqa: E402
import serve_fixtures as sf  # noqa: E402

schemathesis = pytest.importorskip("schemathesis")
uvicorn = pytest.importorskip("uvicorn")

from hypothesis import HealthCheck, given, settings  # noqa: E402

import fastdeberta  # noqa: E402

EXAMPLES_PER_OPERATION = 8


@pytest.fixture(scope="module")
def base_url():
    model = fastdeberta.from_pretrained(fx.mlm_checkpoint())
    app = sf.app_for(model, max_client_batch_size=8, request_timeout=20)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


def test_every_operation_conforms_to_the_openapi_schema(base_url):
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    checks = [schemathesis.checks.not_a_server_error]
    openapi_checks = schemathesis.specs.openapi.checks
    checks += [openapi_checks.status_code_conformance, openapi_checks.content_type_conformance,
               openapi_checks.response_schema_conformance]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/embed", "/embed_all", "/similarity", "/v1/embeddings", "/decode",
                                               "/predict", "/rerank", "/tokenize", "/fill-mask", "/zero-shot",
                                               "/health", "/info", "/metrics"}
    calls: dict[str, set[int]] = {}
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            response = case.call(base_url=base_url, timeout=30)
            calls.setdefault(case.operation.path, set()).add(response.status_code)
            case.validate_response(response, checks=checks)

        check()
    # the generated requests reached the model, not only the validators
    for path in ("/embed", "/embed_all", "/similarity", "/v1/embeddings", "/tokenize", "/decode"):
        assert 200 in calls[path], calls
    assert calls["/predict"] <= {413, 422, 424}   # a masked-LM model: /predict is refused as documented
