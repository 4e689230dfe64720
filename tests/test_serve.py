"""Tests for the HTTP server in process (httpx over ASGI, the app's lifespan running): every route's
body against TEI's documented schema and against the model computed directly, dynamic batching vs one
request at a time, the 413 / 422 / 424 / 429 / 504 answers, metrics, and the command line.

Expected values come from the model's own forward pass (or the project's pipelines) on one input at
a time, never from the server.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inference_fixtures as fx  # noqa: E402
import serve_fixtures as sf  # noqa: E402

import fastdeberta  # noqa: E402
from fastdeberta.serve.batcher import Batcher  # noqa: E402
from fastdeberta.serve.metrics import Histogram  # noqa: E402

ATOL = 1e-5
TEXTS = ["The cat sat on the mat.", "Hello", "", "Free software is a matter of liberty, not price.",
         "license terms", "a b c d e f g h i j k l m n o p"]


# the models here are tiny: one thread is fastest and avoids thread thrashing on a busy machine
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mlm():
    return fastdeberta.from_pretrained(fx.mlm_checkpoint())


@pytest.fixture(scope="module")
def classifier():
    return sf.load(fx.classifier_checkpoint())


@pytest.fixture(scope="module")
def reranker():
    return sf.reranker_model()


def one_by_one_logits(model, first: str, second: str | None = None) -> torch.Tensor:
    enc = model.tokenizer(first, second, return_tensors="pt")
    with torch.inference_mode():
        return model(**enc).logits[0].float()


# ----------------------------------------------------------------------------------------------------
# each route: TEI's format, values from the model


def test_embed_matches_encode_and_tei_schema(mlm):
    app = sf.app_for(mlm)

    async def body(client):
        return [await client.post("/embed", json={"inputs": TEXTS}),
                await client.post("/embed", json={"inputs": TEXTS[0]}),
                await client.post("/embed", json={"inputs": TEXTS, "normalize": False})]

    many, one, raw = sf.run_client(app, body)
    for response in (many, one, raw):
        assert response.status_code == 200, response.text
        assert sf.schema_errors(response.json(), sf.TEI["EmbedResponse"]) == []
    expected = torch.as_tensor(mlm.encode(TEXTS, normalize=False))
    assert torch.allclose(torch.tensor(raw.json()), expected, atol=ATOL)
    normalized = torch.tensor(many.json())
    assert torch.allclose(normalized, torch.nn.functional.normalize(expected, dim=-1), atol=ATOL)
    assert torch.allclose(normalized.norm(dim=-1), torch.ones(len(TEXTS)), atol=1e-5)   # TEI normalizes by default
    assert len(one.json()) == 1 and torch.allclose(torch.tensor(one.json()[0]), normalized[0], atol=ATOL)


def test_predict_single_pair_and_batch(classifier):
    app = sf.app_for(classifier)
    labels = ["neg", "neu", "pos"]

    async def body(client):
        return [await client.post("/predict", json={"inputs": "The cat sat on the mat."}),
                await client.post("/predict", json={"inputs": ["license terms", "Free software"]}),
                await client.post("/predict", json={"inputs": [["Hello"], ["license terms", "Free software"]],
                                                    "raw_scores": True})]

    single, pair, batch = sf.run_client(app, body)
    for response in (single, pair, batch):
        assert response.status_code == 200, response.text
        assert sf.schema_errors(response.json(), sf.TEI["PredictResponse"]) == []

    def check(predictions, logits, raw):
        expected = logits if raw else logits.softmax(-1)
        assert [p["score"] for p in predictions] == sorted((p["score"] for p in predictions), reverse=True)
        got = {p["label"]: p["score"] for p in predictions}
        assert sorted(got) == labels
        assert torch.allclose(torch.tensor([got[label] for label in labels]), expected, atol=ATOL)

    check(single.json(), one_by_one_logits(classifier, "The cat sat on the mat."), raw=False)
    check(pair.json(), one_by_one_logits(classifier, "license terms", "Free software"), raw=False)
    assert len(batch.json()) == 2
    check(batch.json()[0], one_by_one_logits(classifier, "Hello"), raw=True)
    check(batch.json()[1], one_by_one_logits(classifier, "license terms", "Free software"), raw=True)


def test_rerank_scores_sorted_with_text(reranker):
    app = sf.app_for(reranker)
    query, texts = "free software", ["The cat sat on the mat.", "license terms", "Hello", "liberty, not price"]

    async def body(client):
        return [await client.post("/rerank", json={"query": query, "texts": texts, "return_text": True}),
                await client.post("/rerank", json={"query": query, "texts": texts, "raw_scores": True})]

    with_text, raw = sf.run_client(app, body)
    for response in (with_text, raw):
        assert response.status_code == 200, response.text
        assert sf.schema_errors(response.json(), sf.TEI["RerankResponse"]) == []
    logits = {i: float(one_by_one_logits(reranker, query, t)[0]) for i, t in enumerate(texts)}
    ranks = with_text.json()
    assert [r["index"] for r in ranks] == sorted(logits, key=lambda i: -logits[i])
    for r in ranks:
        assert r["text"] == texts[r["index"]]
        assert r["score"] == pytest.approx(torch.sigmoid(torch.tensor(logits[r["index"]])).item(), abs=ATOL)
    for r in raw.json():
        assert "text" not in r and r["score"] == pytest.approx(logits[r["index"]], abs=ATOL)


def test_rerank_refuses_a_multi_label_classifier(classifier):
    app = sf.app_for(classifier)
    response = sf.run_client(app, lambda c: c.post("/rerank", json={"query": "q", "texts": ["a"]}))
    assert response.status_code == 424
    assert response.json()["error_type"] == "backend" and "one output" in response.json()["error"]


def test_tokenize_ids_offsets_and_special_tokens(mlm):
    app = sf.app_for(mlm)
    texts = ["The cat sat.", "Hello world"]

    async def body(client):
        return [await client.post("/tokenize", json={"inputs": texts}),
                await client.post("/tokenize", json={"inputs": texts[0], "add_special_tokens": False})]

    both, plain = sf.run_client(app, body)
    assert both.status_code == 200 and plain.status_code == 200
    assert sf.schema_errors(both.json(), sf.TEI["TokenizeResponse"]) == []
    for text, tokens in zip(texts, both.json()):
        assert [t["id"] for t in tokens] == mlm.tokenizer(text)["input_ids"]
        assert tokens[0]["special"] and tokens[-1]["special"] and tokens[0]["start"] is None
        for token in tokens[1:-1]:
            assert not token["special"] and token["text"] == text[token["start"]:token["stop"]]
    assert [t["id"] for t in plain.json()[0]] == mlm.tokenizer(texts[0], add_special_tokens=False)["input_ids"]


def test_fill_mask_matches_the_pipeline(mlm):
    app = sf.app_for(mlm)
    mask = mlm.tokenizer.mask_token
    inputs = [f"The cat {mask} on the mat.", f"{mask} software is {mask}."]
    pipe = fastdeberta.pipeline("fill-mask", model=mlm)

    async def body(client):
        return [await client.post("/fill-mask", json={"inputs": inputs, "top_k": 3}),
                await client.post("/fill-mask", json={"inputs": inputs[0], "top_k": 2, "targets": ["cat", "sat"]})]

    many, targeted = sf.run_client(app, body)
    assert many.status_code == 200 and targeted.status_code == 200, many.text + targeted.text

    def same(got, expected):
        if isinstance(expected, list):
            assert isinstance(got, list) and len(got) == len(expected)
            for g, e in zip(got, expected):
                same(g, e)
            return
        assert {k: got[k] for k in ("token", "token_str", "sequence")} == \
               {k: expected[k] for k in ("token", "token_str", "sequence")}
        assert got["score"] == pytest.approx(expected["score"], abs=ATOL)

    same(many.json(), pipe(inputs, top_k=3))
    same(targeted.json(), pipe(inputs[0], top_k=2, targets=["cat", "sat"]))


def test_zero_shot_matches_the_pipeline():
    from fastdeberta.inference.pipelines import SUPPORTED_TASKS

    if "zero-shot-classification" not in SUPPORTED_TASKS:
        pytest.skip("pipeline('zero-shot-classification') is not in this tree yet")
    model = sf.nli_model()
    app = sf.app_for(model)
    request = {"inputs": ["The cat sat on the mat.", "Free software"], "candidate_labels": ["animals", "law", "art"],
               "hypothesis_template": "This text is about {}."}
    response = sf.run_client(app, lambda c: c.post("/zero-shot", json=request))
    assert response.status_code == 200, response.text
    expected = fastdeberta.pipeline("zero-shot-classification", model=model)(
        request["inputs"], candidate_labels=request["candidate_labels"],
        hypothesis_template=request["hypothesis_template"])
    for got, want in zip(response.json(), expected):
        assert got["sequence"] == want["sequence"] and got["labels"] == want["labels"]
        assert got["scores"] == pytest.approx(want["scores"], abs=ATOL)


def test_info_health_metrics_and_routes_for_the_model(mlm):
    app = sf.app_for(mlm, max_batch_tokens=1024, max_concurrent_requests=7, max_input_length=100)

    async def body(client):
        await client.post("/embed", json={"inputs": TEXTS})
        await client.post("/embed", json={"inputs": []})
        answers = [await client.get("/info"), await client.get("/health"), await client.get("/metrics"),
                   await client.post("/predict", json={"inputs": "x"})]
        app.state.server.draining = True   # what SIGTERM sets: /health turns 503 while requests finish
        return answers + [await client.get("/health"), await client.post("/embed", json={"inputs": "late"})]

    info, health, metrics, predict, draining, late = sf.run_client(app, body)
    assert health.status_code == 200
    assert draining.status_code == 503 and draining.json()["error_type"] == "unhealthy"
    # a request that reaches the app once it drains is refused (503, retry elsewhere); admitted ones finish
    assert late.status_code == 503 and late.json()["error_type"] == "unhealthy"
    data = info.json()
    assert sf.schema_errors(data, sf.TEI["Info"]) == []
    assert data["model_dtype"] == "float32" and data["task"] == "masked-lm"
    assert data["model_type"] == {"embedding": {"pooling": "mean"}}
    assert (data["max_batch_tokens"], data["max_concurrent_requests"], data["max_input_length"]) == (1024, 7, 100)
    assert "/fill-mask" in data["routes"] and "/predict" not in data["routes"]
    assert predict.status_code == 424 and predict.json()["error_type"] == "backend"
    text = metrics.text
    assert metrics.headers["content-type"].startswith("text/plain")
    assert sf.metric_value(text, "fastdeberta_requests_total", route="/embed", status="200") == 1
    assert sf.metric_value(text, "fastdeberta_requests_total", route="/embed", status="422") == 1
    real_tokens = sum(len(ids) for ids in mlm.tokenizer(TEXTS)["input_ids"])
    assert sf.metric_value(text, "fastdeberta_tokens_total") == real_tokens
    assert sf.metric_value(text, "fastdeberta_batch_size_count") >= 1
    assert sf.metric_value(text, "fastdeberta_request_duration_seconds_count", route="/embed") == 2
    assert "fastdeberta_queue_size 0" in text


# ----------------------------------------------------------------------------------------------------
# dynamic batching


def test_concurrent_requests_are_batched_and_match_one_at_a_time(mlm, classifier):
    texts = [fx.sentences()[i % len(fx.sentences())] for i in range(24)]
    embed_app, predict_app = sf.app_for(mlm), sf.app_for(classifier, max_batch_tokens=512)

    async def one_at_a_time(client, route, items):
        return [(await client.post(route, json={"inputs": x})).json() for x in items]

    async def together(app, client, route, items):
        gate = sf.Gate(app)   # hold the model so that every request is queued before the first batch runs
        tasks = [asyncio.create_task(client.post(route, json={"inputs": x})) for x in items]
        await gate.until(lambda: app.state.server.in_flight == len(items))
        before = app.state.server.batcher.batches_run
        gate.open()
        responses = await asyncio.gather(*tasks)
        return [r.json() for r in responses], app.state.server.batcher.batches_run - before

    async def embed_body(client):
        return await one_at_a_time(client, "/embed", texts), await together(embed_app, client, "/embed", texts)

    pairs = [[t, texts[-1 - i]] for i, t in enumerate(texts[:12])] + texts[12:]
    async def predict_body(client):
        return await one_at_a_time(client, "/predict", pairs), await together(predict_app, client, "/predict", pairs)

    alone, (batched, batches) = sf.run_client(embed_app, embed_body)
    assert batches < len(texts) / 4, f"{batches} forward passes for {len(texts)} concurrent requests"
    assert torch.allclose(torch.tensor(batched), torch.tensor(alone), atol=ATOL)
    alone, (batched, batches) = sf.run_client(predict_app, predict_body)
    assert batches < len(pairs) / 2
    for got, want in zip(batched, alone):
        assert [p["label"] for p in got] == [p["label"] for p in want]
        assert [p["score"] for p in got] == pytest.approx([p["score"] for p in want], abs=ATOL)


def test_batcher_respects_the_token_budget_and_row_limit():
    seen: list[tuple[int, int]] = []

    def run_batch(kind, batch):
        seen.append((len(batch), batch.num_tokens))
        return [int(n) for n in batch.lengths]

    async def main():
        batcher = Batcher(run_batch, max_batch_tokens=40, max_batch_requests=3)
        batcher.start()
        lengths = [5, 12, 3, 9, 20, 7, 7, 1, 15, 4]
        futures = batcher.submit("embed", [([7] * n, None) for n in lengths])
        results = await asyncio.gather(*futures)
        await batcher.stop()
        return lengths, results

    lengths, results = asyncio.run(main())
    assert results == lengths                   # every row's own result, in submission order
    assert all(rows <= 3 and tokens <= 40 for rows, tokens in seen), seen
    assert sum(rows for rows, _ in seen) == len(lengths)


# ----------------------------------------------------------------------------------------------------
# limits and errors


def test_limits_answer_413_with_tei_bodies(mlm):
    app = sf.app_for(mlm, max_client_batch_size=4, max_input_length=16, payload_limit=4000)
    long_text = " ".join(["software"] * 40)

    async def body(client):
        return {
            "count": await client.post("/embed", json={"inputs": ["a"] * 5}),
            "length": await client.post("/embed", json={"inputs": ["ok", long_text]}),
            "cut": await client.post("/embed", json={"inputs": long_text, "truncate": True}),
            "cut_left": await client.post("/embed", json={"inputs": long_text, "truncate": True,
                                                         "truncation_direction": "Left"}),
            "payload": await client.post("/embed", json={"inputs": "x" * 5000}),
            "tokenize": await client.post("/tokenize", json={"inputs": ["a"] * 5}),
        }

    r = sf.run_client(app, body)
    for name in ("count", "length", "payload", "tokenize"):
        assert r[name].status_code == 413, (name, r[name].text)
        assert sf.schema_errors(r[name].json(), sf.TEI["ErrorResponse"]) == []
        assert r[name].json()["error_type"] == "validation"
    assert "batch size 5 > maximum allowed batch size 4" in r["count"].json()["error"]
    assert "input 1 has" in r["length"].json()["error"] and "truncate" in r["length"].json()["error"]
    assert "4000 bytes" in r["payload"].json()["error"]
    assert r["cut"].status_code == 200 and r["cut_left"].status_code == 200
    ids = mlm.tokenizer(long_text)["input_ids"]
    right, left = ids[:15] + ids[-1:], ids[:1] + ids[-15:]
    for response, kept in ((r["cut"], right), (r["cut_left"], left)):
        with torch.inference_mode():
            hidden = mlm.base_model(input_ids=torch.tensor([kept])).last_hidden_state.mean(dim=1)
        assert torch.allclose(torch.tensor(response.json()), torch.nn.functional.normalize(hidden, dim=-1), atol=ATOL)


def test_bad_bodies_answer_422_and_unknown_routes_keep_the_error_shape(mlm):
    app = sf.app_for(mlm)
    bad = [b"{not json", b'{"inputs": 3}', b'{"inputs": ["a", 3]}', b'{"inputs": []}', b'{"normalize": true}',
           b'{"inputs": "a", "normalize": "yes"}', b"[]", b'{"inputs": "no mask here"}']

    async def body(client):
        out = [await client.post("/embed", content=c, headers={"content-type": "application/json"}) for c in bad[:-1]]
        out.append(await client.post("/fill-mask", content=bad[-1], headers={"content-type": "application/json"}))
        out.append(await client.get("/nowhere"))
        out.append(await client.get("/embed"))
        return out

    responses = sf.run_client(app, body)
    for content, response in zip(bad, responses):
        assert response.status_code == 422, (content, response.status_code, response.text)
        assert response.json()["error_type"] == "validation" and response.json()["error"]
    assert "mask token" in responses[len(bad) - 1].json()["error"]
    assert [r.status_code for r in responses[-2:]] == [404, 405]
    assert all(set(r.json()) == {"error", "error_type"} for r in responses[-2:])


def test_over_the_concurrency_limit_answers_429_then_recovers(mlm):
    app = sf.app_for(mlm, max_concurrent_requests=2)

    async def body(client):
        gate = sf.Gate(app)
        held = [asyncio.create_task(client.post("/embed", json={"inputs": t})) for t in TEXTS[:2]]
        await gate.until(lambda: app.state.server.in_flight == 2)
        refused = await client.post("/embed", json={"inputs": "one too many"})
        gate.open()
        return refused, await asyncio.gather(*held), await client.post("/embed", json={"inputs": "after"})

    refused, held, after = sf.run_client(app, body)
    assert refused.status_code == 429
    assert refused.json()["error_type"] == "overloaded" and "--max-concurrent-requests" in refused.json()["error"]
    assert sf.schema_errors(refused.json(), sf.TEI["ErrorResponse"]) == []
    assert [r.status_code for r in held] == [200, 200] and after.status_code == 200


def test_request_timeout_answers_504_and_the_server_keeps_serving(mlm):
    app = sf.app_for(mlm, request_timeout=0.3)

    async def body(client):
        gate = sf.Gate(app, timeout=1.0)
        slow = await client.post("/embed", json={"inputs": "waits for the gate"})
        gate.open()
        return slow, await client.post("/embed", json={"inputs": "fine"})

    slow, after = sf.run_client(app, body)
    assert slow.status_code == 504 and slow.json()["error_type"] == "timeout"
    assert after.status_code == 200 and len(after.json()) == 1


def test_histogram_buckets_are_cumulative():
    hist = Histogram("h", "help", (1, 5))
    for value in (0.5, 2, 3, 9):
        hist.observe(value)
    lines = hist.render()
    assert 'h_bucket{le="1"} 1' in lines and 'h_bucket{le="5"} 3' in lines and 'h_bucket{le="+Inf"} 4' in lines
    assert "h_sum 14.5" in lines and "h_count 4" in lines


# ----------------------------------------------------------------------------------------------------
# command line


def cli(capsys, *args: str) -> tuple[int, str, str]:
    from fastdeberta.cli.main import main

    try:
        code = main(["serve", *args])
    except SystemExit as stop:   # --help
        code = stop.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_help_and_clear_errors(capsys, monkeypatch):
    from fastdeberta.serve import settings
    from fastdeberta.shipped import DEFAULT_MODEL

    _, help_text, _ = cli(capsys, "--help")
    for option in ("--model", "--task", "--host", "--port", "--max-batch-tokens", "--max-concurrent-requests",
                   "--max-input-length", "--dtype", "--engine", "--request-timeout", "--max-client-batch-size",
                   "--threads"):
        assert option in help_text
    assert settings.default_model() == DEFAULT_MODEL           # without --model: the shipped model
    monkeypatch.setattr(settings, "DEFAULT_MODEL", None)       # an installation without a default model
    code, _, err = cli(capsys)
    assert code == 2 and "--model" in err and "default model" in err
    monkeypatch.undo()
    code, _, err = cli(capsys, "--model", str(fx.mlm_checkpoint()), "--engine", "onnxruntime")
    assert code == 2 and "onnx" in err.lower()
    code, _, err = cli(capsys, "--model", str(fx.mlm_checkpoint()), "--max-batch-tokens", "64")
    assert code == 2 and "max_batch_tokens (64)" in err
    code, _, err = cli(capsys, "--model", str(fx.mlm_checkpoint()), "--max-concurrent-requests", "0")
    assert code == 2 and "--max-concurrent-requests" in err


@pytest.mark.slow
def test_onnxruntime_engine_serves_the_same_embeddings(tmp_path, mlm):
    from fastdeberta.serve.server import load_engine, onnx_engine_available

    pytest.importorskip("onnxruntime")
    if not onnx_engine_available():
        pytest.skip("this tree has no fastdeberta.export (ONNX engine)")
    from fastdeberta.export import export_onnx

    export_onnx(fx.mlm_checkpoint(), tmp_path / "onnx", task="base")
    engine = load_engine(str(tmp_path / "onnx"), engine="onnxruntime")
    app = sf.create_app(engine, sf.ServeSettings())
    response = sf.run_client(app, lambda c: c.post("/embed", json={"inputs": TEXTS, "normalize": False}))
    assert response.status_code == 200, response.text
    assert torch.allclose(torch.tensor(response.json()), torch.as_tensor(mlm.encode(TEXTS)), atol=1e-4)


def test_request_fields_and_defaults_are_teis(mlm):
    """Every field TEI documents for its routes served here exists with TEI's default."""
    spec = sf.app_for(mlm).openapi()
    components = spec["components"]["schemas"]
    for route, fields in sf.TEI_REQUEST_DEFAULTS.items():
        ref = spec["paths"][route]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = components[ref.rsplit("/", 1)[-1]]
        for name, default in fields.items():
            assert name in schema["properties"], (route, name)
            if default is None and name in sf.REQUIRED_FIELDS:
                assert name in schema["required"], (route, name)
            else:
                assert schema["properties"][name].get("default") == default, (route, name)
        for status in (413, 422, 424, 429):
            assert str(status) in spec["paths"][route]["post"]["responses"], (route, status)
