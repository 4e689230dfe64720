"""The embedding routes, with TEI's bodies: /embed (pooled vectors), /embed_all (every token's vector),
/similarity (cosine similarity of a source text with others) and the OpenAI-compatible
/v1/embeddings (alias /embeddings, as TEI).

Each one takes the common way of :mod:`fastdeberta.serve.app`: admission (429 / 504 / 503) -> count
and length limits (413) -> tokenization in a tokenization thread -> the dynamic batcher -> formatting.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import numpy as np
import torch
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from . import schemas
from .engine import EMBED, TOKENS
from .errors import InvalidInput

if TYPE_CHECKING:
    from .app import ServerState

__all__ = ["add_embedding_routes", "float32_base64"]


def refuse_prompt(prompt_name: str | None) -> None:
    """TEI's ``prompt_name`` needs sentence-transformers prompts, which fastdeberta models do not carry."""
    if prompt_name is not None:
        raise InvalidInput(f"prompt_name {prompt_name!r} cannot be applied: this server has no sentence-transformers "
                           "prompts; send null and prepend the prompt text to each input yourself")


def float32_base64(vector: torch.Tensor) -> str:
    """A (D,) vector as base64 of its little-endian float32 bytes (what OpenAI clients decode)."""
    return base64.b64encode(np.ascontiguousarray(vector.numpy(), dtype="<f4").tobytes()).decode("ascii")


def finish_vectors(vectors: torch.Tensor, dimensions: int | None, normalize: bool) -> torch.Tensor:
    """(N, D) pooled vectors -> their first ``dimensions`` values (Matryoshka), then L2-normalised."""
    if dimensions is not None:
        size = vectors.shape[-1]
        if dimensions > size:
            raise InvalidInput(f"dimensions {dimensions} is more than this model's embedding size {size}; "
                               f"ask for at most {size} (or null for all)")
        vectors = vectors[:, :dimensions]
    if normalize:
        vectors = torch.nn.functional.normalize(vectors, p=2, dim=-1)
    return vectors


async def run_inputs(state: ServerState, kind: str, items: list, *, truncate: bool, direction: str,
                     field: str = "inputs") -> tuple[list[torch.Tensor], int]:
    """The batcher's outputs of ``kind`` for ``items`` (texts or token-id lists), one per item, and their
    token count: count limit -> tokenization thread -> dynamic batcher. Call it inside ``state.admit()``."""
    state.check_count(len(items), field)
    rows = await state.in_thread(state.engine.encode_inputs, items, truncate=truncate, direction=direction)
    return await state.infer(kind, [(row, None) for row in rows]), sum(len(row) for row in rows)


async def pooled_vectors(state: ServerState, items: list, *, truncate: bool, direction: str,
                         field: str = "inputs") -> tuple[torch.Tensor, int]:
    """(N, D) float32 pooled vectors of ``items`` and their token count (inside ``state.admit()``)."""
    vectors, tokens = await run_inputs(state, EMBED, items, truncate=truncate, direction=direction, field=field)
    return torch.stack(vectors), tokens


def add_embedding_routes(app: FastAPI, state: ServerState) -> None:
    engine = state.engine
    errors = schemas.ERROR_RESPONSES

    @app.post("/embed", response_model=schemas.EmbedResponse, responses=errors,
              summary="sentence embeddings: one vector per input (TEI's /embed)")
    async def embed(req: schemas.EmbedRequest) -> JSONResponse:
        refuse_prompt(req.prompt_name)
        items = schemas.split_inputs(req.inputs)
        async with state.admit():
            vectors, _ = await pooled_vectors(state, items, truncate=state.truncate(req.truncate),
                                              direction=req.truncation_direction.lower())
        return JSONResponse(finish_vectors(vectors, req.dimensions, req.normalize).tolist())

    @app.post("/embed_all", response_model=schemas.EmbedAllResponse, responses=errors,
              summary="every token's vector, not pooled nor normalised, [CLS] and [SEP] included (TEI's /embed_all)")
    async def embed_all(req: schemas.EmbedAllRequest) -> JSONResponse:
        refuse_prompt(req.prompt_name)
        items = schemas.split_inputs(req.inputs)
        async with state.admit():
            matrices, _ = await run_inputs(state, TOKENS, items, truncate=state.truncate(req.truncate),
                                           direction=req.truncation_direction.lower())   # N x (n_i, D)
        return JSONResponse([matrix.tolist() for matrix in matrices])

    @app.post("/similarity", response_model=schemas.SimilarityResponse, responses=errors,
              summary="cosine similarity of source_sentence with each of sentences, in order (TEI's /similarity)")
    async def similarity(req: schemas.SimilarityRequest) -> JSONResponse:
        params = req.parameters or schemas.SimilarityParameters()
        refuse_prompt(params.prompt_name)
        texts = [req.inputs.source_sentence, *req.inputs.sentences]
        async with state.admit():
            if not req.inputs.sentences:
                raise InvalidInput("`inputs.sentences` cannot be empty; give at least one text to compare with")
            # the source sentence counts towards --max-client-batch-size, as in TEI
            vectors, _ = await pooled_vectors(state, texts, truncate=state.truncate(params.truncate),
                                              direction=params.truncation_direction.lower(), field="inputs.sentences")
        scores = torch.nn.functional.cosine_similarity(vectors[:1], vectors[1:], dim=-1)   # (len(sentences),)
        return JSONResponse(scores.tolist())

    async def openai_embed(req: schemas.OpenAICompatRequest) -> JSONResponse:
        items = schemas.split_inputs(req.input)
        async with state.admit():   # TEI: the server's --auto-truncate, cut from the right, normalised
            vectors, tokens = await pooled_vectors(state, items, truncate=state.settings.auto_truncate,
                                                   direction="right", field="input")
        vectors = finish_vectors(vectors, req.dimensions, normalize=True)
        as_base64 = req.encoding_format == "base64"
        data = [{"object": "embedding", "embedding": float32_base64(v) if as_base64 else v.tolist(), "index": i}
                for i, v in enumerate(vectors)]
        return JSONResponse({"object": "list", "data": data, "model": engine.model_id,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    summary = "OpenAI-compatible embeddings (TEI's /v1/embeddings); errors: {\"message\", \"code\", \"type\"}"
    for path, listed in (("/v1/embeddings", True), ("/embeddings", False)):
        app.post(path, response_model=schemas.OpenAICompatResponse, responses=schemas.OPENAI_ERROR_RESPONSES,
                 summary=summary, include_in_schema=listed)(openai_embed)
