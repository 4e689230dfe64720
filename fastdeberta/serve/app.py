"""The HTTP routes: TEI's /embed, /embed_all, /similarity, /v1/embeddings (in
:mod:`fastdeberta.serve.embedding_routes`), /predict, /rerank, /tokenize, /decode, /health, /info,
/metrics, plus /fill-mask and /zero-shot; FastAPI serves the OpenAPI schema at /openapi.json (and /docs).

Every inference request goes the same way: admission (at most ``max_concurrent_requests`` in
flight, else 429; one deadline of ``request_timeout`` seconds, else 504) -> input checks (count and
length limits, else 413) -> tokenization in a tokenization thread -> the dynamic batcher (model
thread) -> formatting. Errors have TEI's body ``{"error", "error_type"}``, on /v1/embeddings TEI's
``{"message", "code", "type"}`` (see :mod:`fastdeberta.serve.errors` for the codes).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException

from .. import __version__
from . import schemas
from .batcher import Batcher
from .embedding_routes import add_embedding_routes, refuse_prompt
from .engine import CLASSIFY, Engine, class_scores
from .errors import (
    BackendError,
    InputTooLarge,
    InvalidInput,
    Overloaded,
    ServeError,
    ShuttingDown,
    Timeout,
    TokenizerError,
    error_body,
)
from .metrics import CONTENT_TYPE, ServerMetrics
from .settings import ServeSettings

__all__ = ["ServerState", "create_app"]

INFERENCE_ROUTES = ("/embed", "/embed_all", "/similarity", "/v1/embeddings", "/embeddings", "/predict", "/rerank",
                    "/tokenize", "/decode", "/fill-mask", "/zero-shot")
KNOWN_PATHS = frozenset(INFERENCE_ROUTES + ("/health", "/info", "/metrics", "/openapi.json", "/docs"))
ERROR_RESPONSES = schemas.ERROR_RESPONSES


class ServerState:
    """What the routes share: the engine, the limits, the batcher, the tokenization threads, metrics."""

    def __init__(self, engine: Engine, settings: ServeSettings, engine_name: str = "torch"):
        if settings.max_batch_tokens < engine.max_input_length:
            raise ValueError(
                f"max_batch_tokens ({settings.max_batch_tokens}) must hold at least one input of max_input_length "
                f"({engine.max_input_length}) tokens; raise --max-batch-tokens or lower --max-input-length"
            )
        self.engine = engine
        self.settings = settings
        self.engine_name = engine_name
        self.metrics = ServerMetrics()
        self.batcher = Batcher(engine.run_batch, max_batch_tokens=settings.max_batch_tokens,
                               max_batch_requests=settings.max_batch_requests, pad_id=engine.pad_id,
                               metrics=self.metrics)
        self.tokenizer_threads: ThreadPoolExecutor | None = None
        self.in_flight = 0
        self.draining = False   # set on SIGTERM: /health turns 503 while in-flight requests finish

    async def start(self) -> None:
        self.tokenizer_threads = ThreadPoolExecutor(self.settings.tokenization_workers,
                                                    thread_name_prefix="fastdeberta-tokenize")
        self.batcher.start()

    async def stop(self) -> None:
        self.draining = True
        await self.batcher.stop()
        if self.tokenizer_threads is not None:
            self.tokenizer_threads.shutdown(wait=True)

    # -- per request ------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Hold one of the ``max_concurrent_requests`` slots, under the request deadline."""
        if self.draining or not self.batcher.running:   # after SIGTERM new requests are refused at once
            raise ShuttingDown("the server is shutting down (or not started); send the request to another replica")
        limit = self.settings.max_concurrent_requests
        if self.in_flight >= limit:
            raise Overloaded(f"Model is overloaded: {self.in_flight} requests are in flight and the limit is {limit} "
                             "(--max-concurrent-requests); retry after a short wait")
        self.in_flight += 1
        self.metrics.in_flight.set(self.in_flight)
        timeout = self.settings.request_timeout
        try:
            async with asyncio.timeout(timeout):
                yield
        except TimeoutError:
            raise Timeout(f"the request did not finish within {timeout:g} s (--request-timeout); the server is busy, "
                          "retry later or send fewer inputs") from None
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.set(self.in_flight)

    def check_count(self, count: int, field: str = "inputs") -> None:
        if count == 0:
            raise InvalidInput(f"`{field}` cannot be empty")
        limit = self.settings.max_client_batch_size
        if count > limit:
            raise InputTooLarge(f"batch size {count} > maximum allowed batch size {limit} "
                                f"(--max-client-batch-size); split `{field}` over several requests")

    def truncate(self, requested: bool | None) -> bool:
        return self.settings.auto_truncate if requested is None else requested

    async def in_thread(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """Run tokenization work in a tokenization thread; a ValueError there (the tokenizer refuses the input)
        becomes a 422 ``tokenizer`` error."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.tokenizer_threads, functools.partial(fn, *args, **kwargs))
        except ServeError:
            raise
        except ValueError as err:   # the tokenizer refuses the input
            raise TokenizerError(str(err)) from err

    async def infer(self, kind: str, rows: list[tuple[list[int], list[int] | None]]) -> list[Any]:
        """Queue the rows for the batcher; their results in order."""
        futures = self.batcher.submit(kind, rows)
        try:
            return await asyncio.gather(*futures)
        except ServeError:
            raise
        except Exception as err:  # the model failed on a batch holding these rows
            raise BackendError(f"Inference failed: {type(err).__name__}: {err}") from err

    async def run_job(self, job: Callable[[], Any]) -> Any:
        try:
            return await self.batcher.submit_job(job)
        except ServeError:
            raise
        except ValueError as err:   # the pipeline refuses the input
            raise InvalidInput(str(err)) from err
        except Exception as err:
            raise BackendError(f"Inference failed: {type(err).__name__}: {err}") from err

    def routes(self) -> list[str]:
        """The inference routes the served model answers."""
        engine = self.engine
        routes = ["/embed", "/embed_all", "/similarity", "/v1/embeddings", "/tokenize", "/decode"]
        if engine.task == "sequence-classification":
            routes += ["/predict"] + (["/rerank"] if len(engine.labels) == 1 else []) + ["/zero-shot"]
        if engine.task == "masked-lm":
            routes.append("/fill-mask")
        return routes


# ------------------------------------------------------------------------------------------------
# middleware: body size limit, request counts and latencies


class _Guard:
    """Pure ASGI middleware: refuses bodies over the size limit (413) before any parsing, and counts
    every request by route and status code with its latency. Unknown paths count as "other" so that
    the number of time series stays bounded whatever clients send."""

    def __init__(self, app: Any, state: ServerState):
        self.app, self.state = app, state

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in KNOWN_PATHS else "other"
        start = time.perf_counter()
        status = ["499"]   # stays 499 when the client goes away before an answer (nginx's convention)

        async def send_and_note(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = str(message["status"])
            await send(message)

        try:
            if scope["method"] in ("POST", "PUT", "PATCH"):
                body, refused = await self._read_body(scope, receive)
                if refused is not None:
                    await refused(scope, receive, send_and_note)
                    return
                if body is None:   # disconnected while sending the body
                    return
                receive = _replay(body, receive)
            await self.app(scope, receive, send_and_note)
        finally:
            self.state.metrics.requests.inc(route=route, status=status[0])
            self.state.metrics.request_latency.observe(time.perf_counter() - start, route=route)

    async def _read_body(self, scope: dict, receive: Callable) -> tuple[bytes | None, Response | None]:
        limit = self.state.settings.payload_limit
        too_large = JSONResponse(InputTooLarge(
            f"the request body is larger than the limit of {limit} bytes (--payload-limit); send fewer or "
            "shorter inputs per request").body(scope["path"]), status_code=413)
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                return None, too_large
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None, too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None


def _replay(body: bytes, receive: Callable) -> Callable:
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()   # later calls: wait for the disconnect, as the server would report it

    return replay


def _validation_message(err: RequestValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    more = len(err.errors()) - 5
    return "invalid request: " + "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _answer(request: Request, status: int, message: str, error_type: str, headers: Any = None) -> JSONResponse:
    """An error answer with the body the route's clients expect (TEI's, or TEI's OpenAI-style one)."""
    return JSONResponse(error_body(request.url.path, status, message, error_type), status_code=status,
                        headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServeError)
    async def serve_error(request: Request, err: ServeError) -> JSONResponse:
        return _answer(request, err.status, str(err), err.error_type)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
        return _answer(request, 422, _validation_message(err), "validation")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> JSONResponse:   # a bug: same body shape
        return _answer(request, 500, f"internal error: {type(err).__name__}: {err}", "backend")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        if err.status_code == 400:   # FastAPI's answer to a body it cannot decode (not UTF-8, nested too deep)
            return _answer(request, 422, f"invalid request: the body is not valid JSON text ({err.detail})",
                           "validation")
        return _answer(request, err.status_code, str(err.detail), "validation", getattr(err, "headers", None))


# ------------------------------------------------------------------------------------------------
# the application


def create_app(engine: Engine, settings: ServeSettings | None = None, *, engine_name: str = "torch") -> FastAPI:
    """The ASGI app serving ``engine`` under ``settings``; its lifespan starts and drains the batcher."""
    state = ServerState(engine, settings or ServeSettings(), engine_name)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(title="fastdeberta", version=__version__, lifespan=lifespan,
                  description="DeBERTa inference with text-embeddings-inference's routes, plus fill-mask and "
                              "zero-shot classification. Errors: {\"error\", \"error_type\"}.")
    app.state.server = state
    _install_error_handlers(app)
    _add_info_routes(app, state)
    add_embedding_routes(app, state)
    _add_inference_routes(app, state)
    app.add_middleware(_Guard, state=state)
    return app


def _add_info_routes(app: FastAPI, state: ServerState) -> None:
    @app.get("/health", response_class=Response, summary="200 when the model can answer, 503 while shutting down",
             responses={200: {"description": "ready", "content": {}},
                        503: {"model": schemas.ErrorResponse, "description": "shutting down"}})
    async def health() -> Response:
        if state.draining or not state.batcher.running:
            raise ShuttingDown("unhealthy: the server is shutting down")
        return Response(status_code=200)

    @app.get("/info", response_model=schemas.Info, summary="the served model and the server's limits")
    async def info() -> dict:
        s, e = state.settings, state.engine
        return {"model_id": e.model_id, "model_dtype": e.dtype, "model_type": e.model_type, "task": e.task,
                "engine": state.engine_name, "routes": state.routes(),
                "max_concurrent_requests": s.max_concurrent_requests, "max_input_length": e.max_input_length,
                "max_batch_tokens": s.max_batch_tokens, "max_batch_requests": s.max_batch_requests,
                "max_client_batch_size": s.max_client_batch_size, "auto_truncate": s.auto_truncate,
                "tokenization_workers": s.tokenization_workers, "request_timeout": s.request_timeout,
                "version": __version__}

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics (text format 0.0.4)",
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def metrics() -> PlainTextResponse:
        state.metrics.queue_size.set(state.batcher.queue_size)
        return PlainTextResponse(state.metrics.render(), media_type=CONTENT_TYPE)


def _texts(inputs: str | list[str]) -> tuple[list[str], bool]:
    return ([inputs], True) if isinstance(inputs, str) else (list(inputs), False)


def _add_inference_routes(app: FastAPI, state: ServerState) -> None:
    engine = state.engine

    @app.post("/predict", response_model=schemas.PredictResponse, responses=ERROR_RESPONSES,
              summary="sequence classification: [{label, score}] per input, best first (TEI's /predict)")
    async def predict(req: schemas.PredictRequest) -> JSONResponse:
        engine.require_classifier("/predict")
        single = isinstance(req.inputs, str) or all(isinstance(x, str) for x in req.inputs)
        items = [req.inputs] if single else req.inputs
        pairs = [(x, None) if isinstance(x, str) else (x[0], x[1] if len(x) > 1 else None) for x in items]
        async with state.admit():
            state.check_count(len(pairs))
            rows = await state.in_thread(engine.encode_pairs, pairs, truncate=state.truncate(req.truncate),
                                         direction=req.truncation_direction.lower())
            logits = await state.infer(CLASSIFY, rows)
        results = []
        for row in logits:
            scores = class_scores(row, req.raw_scores)
            ranked = sorted(zip(engine.labels, scores), key=lambda ls: -ls[1])
            results.append([{"label": label, "score": score} for label, score in ranked])
        return JSONResponse(results[0] if single else results)

    @app.post("/rerank", response_model=schemas.RerankResponse, response_model_exclude_none=True,
              responses=ERROR_RESPONSES, summary="score each text against the query, best first (TEI's /rerank)")
    async def rerank(req: schemas.RerankRequest) -> JSONResponse:
        engine.require_reranker()
        async with state.admit():
            state.check_count(len(req.texts), "texts")
            rows = await state.in_thread(engine.encode_pairs, [(req.query, t) for t in req.texts],
                                         truncate=state.truncate(req.truncate),
                                         direction=req.truncation_direction.lower())
            logits = await state.infer(CLASSIFY, rows)
        ranks = []
        for index, row in enumerate(logits):
            rank = {"index": index, "score": class_scores(row, req.raw_scores)[0]}
            if req.return_text:
                rank["text"] = req.texts[index]
            ranks.append(rank)
        ranks.sort(key=lambda r: -r["score"])
        return JSONResponse(ranks)

    @app.post("/tokenize", response_model=schemas.TokenizeResponse, responses=ERROR_RESPONSES,
              summary="tokens of each input with character offsets (TEI's /tokenize)")
    async def tokenize(req: schemas.TokenizeRequest) -> JSONResponse:
        refuse_prompt(req.prompt_name)
        texts, _ = _texts(req.inputs)
        async with state.admit():
            state.check_count(len(texts))   # the length of each text is bounded by the body size limit
            tokens = await state.in_thread(engine.tokens, texts, add_special_tokens=req.add_special_tokens)
        return JSONResponse(tokens)

    @app.post("/decode", response_model=schemas.DecodeResponse, responses=ERROR_RESPONSES,
              summary="token ids back to text: one string per sequence (TEI's /decode)")
    async def decode(req: schemas.DecodeRequest) -> JSONResponse:
        rows = schemas.id_rows(req.ids)
        async with state.admit():
            state.check_count(len(rows), "ids")   # the length of each sequence is bounded by the body size limit
            texts = await state.in_thread(engine.decode, rows, skip_special_tokens=req.skip_special_tokens)
        return JSONResponse(texts)

    @app.post("/fill-mask", response_model=schemas.FillMaskResponse, responses=ERROR_RESPONSES,
              summary="predict the masked words (fastdeberta.pipeline('fill-mask') format)")
    async def fill_mask(req: schemas.FillMaskRequest) -> JSONResponse:
        pipe = engine.fill_mask_pipeline()
        texts, _ = _texts(req.inputs)
        async with state.admit():
            state.check_count(len(texts))
            await state.in_thread(_check_masks, engine, texts, state.truncate(req.truncate))
            # the pipeline batches the texts of one request itself; it runs in the model thread, in queue order
            result = await state.run_job(functools.partial(pipe, req.inputs, top_k=req.top_k, targets=req.targets))
        return JSONResponse(_plain(result))

    @app.post("/zero-shot", response_model=schemas.ZeroShotResponse, responses=ERROR_RESPONSES,
              summary="zero-shot classification with an NLI model (fastdeberta.pipeline('zero-shot-classification') "
                      "format)")
    async def zero_shot(req: schemas.ZeroShotRequest) -> JSONResponse:
        pipe = engine.zero_shot_pipeline()
        texts, single = _texts(req.inputs)
        async with state.admit():
            state.check_count(len(texts))
            state.check_count(len(req.candidate_labels), "candidate_labels")
            if "{}" not in req.hypothesis_template:
                raise InvalidInput(f"hypothesis_template must contain {{}} where the label goes, got "
                                   f"{req.hypothesis_template!r}")
            await state.in_thread(engine.encode_texts, texts, truncate=state.truncate(None))   # length limit
            result = await state.run_job(functools.partial(
                pipe, req.inputs, candidate_labels=req.candidate_labels,
                hypothesis_template=req.hypothesis_template, multi_label=req.multi_label))
        return JSONResponse(_plain(result))


def _check_masks(engine: Engine, texts: list[str], truncate: bool) -> None:
    """Fill-mask inputs within the length limit (or cut), each keeping at least one mask token."""
    ids = engine.encode_texts(texts, truncate=truncate)
    tok = engine.tokenizer
    for i, row in enumerate(ids):
        if tok.mask_token_id not in row:
            where = "was cut off by truncation" if tok.mask_token in texts[i] else "is missing"
            raise InvalidInput(f"input {i}: the mask token {tok.mask_token!r} {where}; write it where a word "
                               f"should be predicted: {texts[i]!r:.120}")


def _plain(value: Any) -> Any:
    """A pipeline result as JSON-ready Python (numpy / torch scalars to floats)."""
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))
