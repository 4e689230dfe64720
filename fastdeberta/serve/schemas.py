"""Request and response bodies. Where text-embeddings-inference (TEI) has the route, the fields, their
defaults and the response shapes are TEI's (docs/openapi.json of TEI 1.x); /fill-mask and /zero-shot
take the arguments of this project's pipelines and return their output format.

Types are strict: ``"normalize": "yes"`` or ``"inputs": 3`` is a 422, not a silent conversion.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "EmbedRequest", "ErrorResponse", "FillMaskRequest", "Info", "PredictRequest", "Prediction", "Rank",
    "RerankRequest", "SimpleToken", "TokenizeRequest", "ZeroShotRequest", "ZeroShotResult",
]

TextOrTexts = str | list[str]
Pair = Annotated[list[str], Field(min_length=2, max_length=2, description="a pair of strings")]
OneOrPair = Annotated[list[str], Field(min_length=1, max_length=2, description="one string or a pair")]
Direction = Literal["Right", "Left", "right", "left"]

TRUNCATE_HELP = ("cut inputs longer than the server's max_input_length instead of refusing them with 413; "
                 "null: the server's --auto-truncate setting")


class _Request(BaseModel):
    model_config = ConfigDict(strict=True)


class EmbedRequest(_Request):
    inputs: TextOrTexts = Field(description="one text or a list of texts", examples=["What is Deep Learning?"])
    normalize: bool = Field(True, description="L2-normalise each vector (TEI's default: true)")
    truncate: bool | None = Field(None, description=TRUNCATE_HELP)
    truncation_direction: Direction = Field("Right", description="which end of a too long input is cut")


class PredictRequest(_Request):
    inputs: str | Pair | list[OneOrPair] = Field(
        description="one text, a pair of texts, or a batch of [text] / [text, text_pair] lists",
        examples=["I like you. I love you"])
    raw_scores: bool = Field(False, description="return the logits instead of softmax (sigmoid for one label)")
    truncate: bool | None = Field(None, description=TRUNCATE_HELP)
    truncation_direction: Direction = "Right"


class Prediction(BaseModel):
    score: float
    label: str


class RerankRequest(_Request):
    query: str = Field(examples=["What is Deep Learning?"])
    texts: list[str] = Field(examples=[["Deep Learning is ..."]])
    raw_scores: bool = Field(False, description="return the logit instead of its sigmoid")
    return_text: bool = Field(False, description="include each text in its result")
    truncate: bool | None = Field(None, description=TRUNCATE_HELP)
    truncation_direction: Direction = "Right"


class Rank(BaseModel):
    index: int = Field(ge=0)
    score: float
    text: str | None = None


class TokenizeRequest(_Request):
    inputs: TextOrTexts
    add_special_tokens: bool = True


class SimpleToken(BaseModel):
    id: int = Field(ge=0)
    text: str
    special: bool
    start: int | None = Field(None, ge=0)
    stop: int | None = Field(None, ge=0)


class FillMaskRequest(_Request):
    inputs: TextOrTexts = Field(description="text(s) with the tokenizer's mask token, e.g. [MASK]",
                                examples=["Paris is the [MASK] of France."])
    top_k: int = Field(5, ge=1, le=1000, description="how many candidates per mask")
    targets: list[str] | None = Field(None, description="score only these words (their first token)")
    truncate: bool | None = Field(None, description=TRUNCATE_HELP)


class FillMaskCandidate(BaseModel):
    score: float
    token: int
    token_str: str
    sequence: str


class ZeroShotRequest(_Request):
    inputs: TextOrTexts = Field(examples=["Who are you voting for in 2020?"])
    candidate_labels: list[str] = Field(min_length=1, examples=[["politics", "sports"]])
    hypothesis_template: str = Field("This example is {}.", description="must contain {} for the label")
    multi_label: bool = Field(False, description="score each label on its own (sigmoid of entailment vs "
                                                 "contradiction) instead of a softmax across labels")


class ZeroShotResult(BaseModel):
    sequence: str
    labels: list[str]
    scores: list[float]


class ErrorResponse(BaseModel):
    error: str
    error_type: str = Field(description="validation, overloaded, backend, unhealthy, timeout or tokenizer")


class Info(BaseModel):
    model_id: str
    model_sha: str | None = None
    model_dtype: str
    model_type: dict[str, Any]
    task: str = Field(description="the fastdeberta task the model was loaded for")
    engine: str
    routes: list[str] = Field(description="the inference routes this model answers")
    max_concurrent_requests: int
    max_input_length: int
    max_batch_tokens: int
    max_batch_requests: int | None = None
    max_client_batch_size: int
    auto_truncate: bool
    tokenization_workers: int
    request_timeout: float
    version: str


EmbedResponse = list[list[float]]
PredictResponse = list[Prediction] | list[list[Prediction]]
RerankResponse = list[Rank]
TokenizeResponse = list[list[SimpleToken]]
FillMaskResponse = list[FillMaskCandidate] | list[list[FillMaskCandidate]] | list[list[list[FillMaskCandidate]]]
ZeroShotResponse = ZeroShotResult | list[ZeroShotResult]
