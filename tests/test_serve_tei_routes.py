"""TEI's /embed_all, /decode, /similarity and the OpenAI-compatible /v1/embeddings, in process (httpx
over ASGI, the app's lifespan running): each body against TEI's documented schema, values against the
model and tokenizer called directly (never against the server), error bodies, and the shared admission,
batching, metrics and shutdown behaviour. The official ``openai`` client is run against /v1/embeddings
when it is installed.
"""

from __future__ import annotations

import asyncio
import base64
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inference_fixtures as fx  # noqa: E402
import serve_fixtures as sf  # noqa: E402

import fastdeberta  # noqa: E402

ATOL = 1e-5
TEXTS = ["The cat sat on the mat.", "Hello", "", "Free software is a matter of liberty, not price."]
LONG = " ".join(["software"] * 40)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mlm():
    return fastdeberta.from_pretrained(fx.mlm_checkpoint())


def token_states(model, ids: list[int]) -> torch.Tensor:
    """(n, D) encoder output of one unpadded sequence."""
    with torch.inference_mode():
        return model.base_model(input_ids=torch.tensor([ids])).last_hidden_state[0].float()


def raw_embeddings(model, texts: list[str]) -> torch.Tensor:
    return torch.as_tensor(model.encode(texts, normalize=False)).float()


def post_all(app, requests: list[tuple[str, dict]]) -> list[httpx.Response]:
    async def body(client):
        return [await client.post(route, json=payload) for route, payload in requests]

    return sf.run_client(app, body)


async def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def assert_tei_error(response, status: int, error_type: str, schema: str = "ErrorResponse") -> dict:
    assert response.status_code == status, response.text
    data = response.json()
    assert sf.schema_errors(data, sf.TEI[schema]) == []
    assert (data["type"] if schema == "OpenAICompatErrorResponse" else data["error_type"]) == error_type
    return data


# ----------------------------------------------------------------------------------------------------
# /embed_all


def test_embed_all_rows_are_the_encoder_states_of_every_token(mlm):
    ids = mlm.tokenizer(TEXTS[0])["input_ids"]
    many, one, by_ids = post_all(sf.app_for(mlm), [("/embed_all", {"inputs": TEXTS}),
                                                   ("/embed_all", {"inputs": TEXTS[1]}),
                                                   ("/embed_all", {"inputs": [ids, TEXTS[1]]})])
    for response in (many, one, by_ids):
        assert response.status_code == 200, response.text
        assert sf.schema_errors(response.json(), sf.TEI["EmbedAllResponse"]) == []
    assert len(many.json()) == len(TEXTS)   # the texts differ in length: rows were padded together
    for text, got in zip(TEXTS, many.json()):
        expected = token_states(mlm, mlm.tokenizer(text)["input_ids"])   # [CLS] and [SEP] included
        assert torch.tensor(got).shape == expected.shape
        assert torch.allclose(torch.tensor(got), expected, atol=ATOL)
    assert len(one.json()) == 1 and torch.allclose(torch.tensor(one.json()[0]), torch.tensor(many.json()[1]), atol=ATOL)
    # token ids are used as given: the ids of a text give that text's rows
    assert torch.allclose(torch.tensor(by_ids.json()[0]), torch.tensor(many.json()[0]), atol=ATOL)


def test_embed_all_length_limit_truncation_and_errors(mlm):
    app = sf.app_for(mlm, max_input_length=16, max_client_batch_size=3)
    ids = mlm.tokenizer(LONG)["input_ids"]
    refused, right, left, plain_ids, count, empty, bad_id, wrong, prompt = post_all(app, [
        ("/embed_all", {"inputs": LONG}),
        ("/embed_all", {"inputs": LONG, "truncate": True}),
        ("/embed_all", {"inputs": LONG, "truncate": True, "truncation_direction": "left"}),
        ("/embed_all", {"inputs": [ids[1:-1]], "truncate": True}),
        ("/embed_all", {"inputs": ["a"] * 4}),
        ("/embed_all", {"inputs": []}),
        ("/embed_all", {"inputs": [[1, 5000]]}),
        ("/embed_all", {"inputs": [1.5]}),
        ("/embed_all", {"inputs": "a", "prompt_name": "query"}),
    ])
    assert "truncate" in assert_tei_error(refused, 413, "validation")["error"]
    for response, kept in ((right, ids[:15] + ids[-1:]), (left, ids[:1] + ids[-15:]), (plain_ids, ids[1:17])):
        assert response.status_code == 200, response.text
        assert torch.allclose(torch.tensor(response.json()[0]), token_states(mlm, kept), atol=ATOL)
    assert "maximum allowed batch size 3" in assert_tei_error(count, 413, "validation")["error"]
    assert "cannot be empty" in assert_tei_error(empty, 422, "validation")["error"]
    assert "5000" in assert_tei_error(bad_id, 422, "tokenizer")["error"]
    assert_tei_error(wrong, 422, "validation")
    assert "prompt" in assert_tei_error(prompt, 422, "validation")["error"]


# ----------------------------------------------------------------------------------------------------
# /decode


def test_decode_inverts_tokenize_and_matches_the_tokenizer(mlm):
    app = sf.app_for(mlm, max_client_batch_size=4)
    texts = ["Hello world, the cat sat.", "Free software is a matter of liberty."]

    async def body(client):
        tokens = (await client.post("/tokenize", json={"inputs": texts})).json()
        rows = [[t["id"] for t in row] for row in tokens]
        return rows, [await client.post("/decode", json={"ids": rows}),
                      await client.post("/decode", json={"ids": rows[0], "skip_special_tokens": False}),
                      await client.post("/decode", json={"ids": []}),
                      await client.post("/decode", json={"ids": [[1, 2]] * 5}),
                      await client.post("/decode", json={"ids": [1, 100000]}),
                      await client.post("/decode", json={"ids": [1, -3]}),
                      await client.post("/decode", json={"ids": "1 2"})]

    rows, (batch, single, empty, count, out_of_range, negative, text) = sf.run_client(app, body)
    for response in (batch, single, empty):
        assert response.status_code == 200, response.text
        assert sf.schema_errors(response.json(), sf.TEI["DecodeResponse"]) == []
    assert batch.json() == texts   # /decode(/tokenize(text)) gives the text back
    assert batch.json() == [mlm.tokenizer.decode(r, skip_special_tokens=True) for r in rows]
    assert single.json() == [mlm.tokenizer.decode(rows[0], skip_special_tokens=False)]
    assert single.json()[0].startswith(mlm.tokenizer.cls_token) and single.json()[0].endswith(mlm.tokenizer.sep_token)
    assert empty.json() == [""]   # as TEI: an empty list is one empty sequence
    assert "maximum allowed batch size 4" in assert_tei_error(count, 413, "validation")["error"]
    assert "100000" in assert_tei_error(out_of_range, 422, "tokenizer")["error"]
    assert_tei_error(negative, 422, "validation")
    assert_tei_error(text, 422, "validation")


# ----------------------------------------------------------------------------------------------------
# /similarity


def test_similarity_is_the_cosine_of_the_embeddings(mlm):
    app = sf.app_for(mlm, max_client_batch_size=4, max_input_length=32)
    source, sentences = TEXTS[0], TEXTS[1:]
    ok, cut, too_many, empty, too_long, prompt, wrong = post_all(app, [
        ("/similarity", {"inputs": {"source_sentence": source, "sentences": sentences}}),
        ("/similarity", {"inputs": {"source_sentence": LONG, "sentences": [source]},
                         "parameters": {"truncate": True}}),
        ("/similarity", {"inputs": {"source_sentence": source, "sentences": ["a"] * 4}}),   # 4 + the source > 4
        ("/similarity", {"inputs": {"source_sentence": source, "sentences": []}}),
        ("/similarity", {"inputs": {"source_sentence": LONG, "sentences": [source]}}),
        ("/similarity", {"inputs": {"source_sentence": source, "sentences": ["a"]},
                         "parameters": {"prompt_name": "query"}}),
        ("/similarity", {"inputs": {"source_sentence": source, "sentences": "a"}}),
    ])
    for response in (ok, cut):
        assert response.status_code == 200, response.text
        assert sf.schema_errors(response.json(), sf.TEI["SimilarityResponse"]) == []
    vectors = raw_embeddings(mlm, [source, *sentences])
    expected = torch.nn.functional.cosine_similarity(vectors[:1], vectors[1:], dim=-1)
    assert torch.allclose(torch.tensor(ok.json()), expected, atol=ATOL)
    ids = mlm.tokenizer(LONG)["input_ids"]
    with torch.inference_mode():
        long_vector = token_states(mlm, ids[:31] + ids[-1:]).mean(dim=0)
    assert cut.json()[0] == pytest.approx(float(torch.nn.functional.cosine_similarity(
        long_vector, vectors[0], dim=0)), abs=ATOL)
    assert "batch size 5 > maximum allowed batch size 4" in assert_tei_error(too_many, 413, "validation")["error"]
    assert "sentences" in assert_tei_error(empty, 422, "validation")["error"]
    assert_tei_error(too_long, 413, "validation")
    assert "prompt" in assert_tei_error(prompt, 422, "validation")["error"]
    assert_tei_error(wrong, 422, "validation")


# ----------------------------------------------------------------------------------------------------
# /v1/embeddings


def test_openai_embeddings_equal_embed_in_float_and_base64(mlm):
    app = sf.app_for(mlm)
    ids = mlm.tokenizer(TEXTS[0])["input_ids"]
    embed, floats, b64, one, by_ids, dims, alias = post_all(app, [
        ("/embed", {"inputs": TEXTS}),
        ("/v1/embeddings", {"input": TEXTS, "model": "anything", "user": "u1"}),
        ("/v1/embeddings", {"input": TEXTS, "encoding_format": "base64"}),
        ("/v1/embeddings", {"input": TEXTS[0]}),
        ("/v1/embeddings", {"input": ids}),
        ("/v1/embeddings", {"input": TEXTS, "dimensions": 8}),
        ("/embeddings", {"input": TEXTS}),
    ])
    for response in (floats, b64, one, by_ids, dims, alias):
        assert response.status_code == 200, response.text
        assert sf.schema_errors(response.json(), sf.TEI["OpenAICompatResponse"]) == []
    data = floats.json()
    assert data["object"] == "list" and data["model"] == app.state.server.engine.model_id
    assert [(d["object"], d["index"]) for d in data["data"]] == [("embedding", i) for i in range(len(TEXTS))]
    tokens = sum(len(row) for row in mlm.tokenizer(TEXTS)["input_ids"])
    assert data["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    vectors = np.array([d["embedding"] for d in data["data"]], dtype=np.float32)
    expected = torch.nn.functional.normalize(raw_embeddings(mlm, TEXTS), dim=-1)
    assert np.allclose(vectors, expected.numpy(), atol=ATOL)
    assert np.array_equal(vectors, np.array(embed.json(), dtype=np.float32))   # the same vectors as /embed
    decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in b64.json()["data"]])
    assert np.array_equal(decoded, vectors)   # base64 of the same float32 values
    assert np.allclose(one.json()["data"][0]["embedding"], vectors[0], atol=ATOL)   # alone: no padding
    assert np.allclose(by_ids.json()["data"][0]["embedding"], vectors[0], atol=ATOL)
    assert by_ids.json()["usage"]["prompt_tokens"] == len(ids)
    cut = torch.nn.functional.normalize(raw_embeddings(mlm, TEXTS)[:, :8], dim=-1)   # first 8, then normalised
    assert np.allclose([d["embedding"] for d in dims.json()["data"]], cut.numpy(), atol=ATOL)
    assert alias.json() == data


def test_openai_embeddings_errors_have_openai_bodies(mlm):
    app = sf.app_for(mlm, max_client_batch_size=3, max_input_length=16, payload_limit=3000)
    answers = post_all(app, [
        ("/v1/embeddings", {"input": []}),
        ("/v1/embeddings", {"input": ["a"] * 4}),
        ("/v1/embeddings", {"input": LONG}),   # --auto-truncate is off
        ("/v1/embeddings", {"input": 3}),
        ("/v1/embeddings", {"inputs": "TEI's field name is input here"}),
        ("/v1/embeddings", {"input": "a", "encoding_format": "int8"}),
        ("/v1/embeddings", {"input": "a", "dimensions": 0}),
        ("/v1/embeddings", {"input": "a", "dimensions": 33}),
        ("/v1/embeddings", {"input": "x" * 4000}),
        ("/v1/embeddings", {"input": [[1, 9999]]}),
    ])
    statuses = [(413 if i in (1, 2, 8) else 422) for i in range(len(answers))]
    for i, (response, status) in enumerate(zip(answers, statuses)):
        kind = "tokenizer" if i == 9 else "validation"
        data = assert_tei_error(response, status, kind, "OpenAICompatErrorResponse")
        assert data["code"] == status and data["message"], (i, data)
    assert "cannot be empty" in answers[0].json()["message"]
    assert "truncate" in answers[2].json()["message"]
    assert "embedding size 32" in answers[7].json()["message"]
    assert "3000 bytes" in answers[8].json()["message"]


def test_official_openai_client(mlm):
    openai = pytest.importorskip("openai")
    app = sf.app_for(mlm, max_client_batch_size=3)

    async def body(client):
        api = openai.AsyncOpenAI(base_url="http://serve.test/v1", api_key="unused", max_retries=0, http_client=client)
        default = await api.embeddings.create(model="fastdeberta", input=TEXTS[:3])   # the client asks for base64
        floats = await api.embeddings.create(model="fastdeberta", input=TEXTS[0], encoding_format="float",
                                             dimensions=8)
        with pytest.raises(openai.APIStatusError) as refused:
            await api.embeddings.create(model="fastdeberta", input=["a"] * 4)
        return default, floats, refused.value

    default, floats, refused = sf.run_client(app, body)
    expected = torch.nn.functional.normalize(raw_embeddings(mlm, TEXTS[:3]), dim=-1)
    assert [d.index for d in default.data] == [0, 1, 2]
    assert np.allclose([d.embedding for d in default.data], expected.numpy(), atol=ATOL)
    assert default.usage.prompt_tokens == sum(len(r) for r in mlm.tokenizer(TEXTS[:3])["input_ids"])
    cut = torch.nn.functional.normalize(raw_embeddings(mlm, TEXTS[:1])[:, :8], dim=-1)
    assert np.allclose(floats.data[0].embedding, cut[0].numpy(), atol=ATOL)
    assert refused.status_code == 413 and refused.body["type"] == "validation"
    assert "maximum allowed batch size 3" in refused.body["message"]


# ----------------------------------------------------------------------------------------------------
# the shared way: batching, admission (429, 503), metrics


def test_new_routes_are_batched_together_and_match_one_at_a_time(mlm):
    app = sf.app_for(mlm)
    requests = [("/embed_all", {"inputs": TEXTS[:2]}), ("/v1/embeddings", {"input": TEXTS}),
                ("/similarity", {"inputs": {"source_sentence": TEXTS[3], "sentences": TEXTS[:3]}}),
                ("/embed_all", {"inputs": TEXTS[2:]}), ("/v1/embeddings", {"input": TEXTS[1]})]

    rows = 2 + 4 + (1 + 3) + 2 + 1   # inputs of the requests above (the similarity source included)
    batcher = app.state.server.batcher

    async def body(client):
        alone = [(await client.post(route, json=payload)).json() for route, payload in requests]
        release = threading.Event()
        blocker = batcher.submit_job(lambda: release.wait(20))   # holds the model thread: every input queues
        tasks = [asyncio.create_task(client.post(route, json=payload)) for route, payload in requests]
        await wait_until(lambda: batcher.queue_size == rows)
        before = batcher.batches_run
        release.set()
        await blocker
        together = [(await task).json() for task in tasks]
        return alone, together, batcher.batches_run - before

    alone, together, batches = sf.run_client(app, body)
    assert batches == 2, f"{batches} forward passes: one per kind (token states, pooled vectors) expected"
    for want, got in zip(alone, together):
        if isinstance(want, dict):   # /v1/embeddings
            want, got = [d["embedding"] for d in want["data"]], [d["embedding"] for d in got["data"]]
        if isinstance(want[0], list) and isinstance(want[0][0], list):   # /embed_all
            for w, g in zip(want, got):
                assert torch.allclose(torch.tensor(g), torch.tensor(w), atol=ATOL)
        else:
            assert torch.allclose(torch.tensor(got), torch.tensor(want), atol=ATOL)


def test_admission_shutdown_and_metrics_cover_the_new_routes(mlm):
    app = sf.app_for(mlm, max_concurrent_requests=1)
    state = app.state.server

    async def body(client):
        gate = sf.Gate(app)
        held = asyncio.create_task(client.post("/embed_all", json={"inputs": "held by the gate"}))
        await gate.until(lambda: state.in_flight == 1)
        busy = [await client.post("/v1/embeddings", json={"input": "a"}),
                await client.post("/decode", json={"ids": [1, 2]}),
                await client.post("/similarity", json={"inputs": {"source_sentence": "a", "sentences": ["b"]}})]
        gate.open()
        held = await held
        metrics = (await client.get("/metrics")).text
        state.draining = True   # what SIGTERM sets
        late = [await client.post("/embed_all", json={"inputs": "late"}),
                await client.post("/v1/embeddings", json={"input": "late"})]
        return held, busy, metrics, late

    held, busy, metrics, late = sf.run_client(app, body)
    assert held.status_code == 200
    openai_busy, decode_busy, similarity_busy = busy
    assert "--max-concurrent-requests" in assert_tei_error(openai_busy, 429, "overloaded",
                                                           "OpenAICompatErrorResponse")["message"]
    assert_tei_error(decode_busy, 429, "overloaded")
    assert_tei_error(similarity_busy, 429, "overloaded")
    assert_tei_error(late[0], 503, "unhealthy")
    assert_tei_error(late[1], 503, "unhealthy", "OpenAICompatErrorResponse")
    assert sf.metric_value(metrics, "fastdeberta_requests_total", route="/embed_all", status="200") == 1
    assert sf.metric_value(metrics, "fastdeberta_requests_total", route="/v1/embeddings", status="429") == 1
    assert sf.metric_value(metrics, "fastdeberta_requests_total", route="/decode", status="429") == 1
    assert sf.metric_value(metrics, "fastdeberta_tokens_total") == len(mlm.tokenizer("held by the gate")["input_ids"])
