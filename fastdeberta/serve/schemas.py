"""Request and response bodies. Where text-embeddings-inference (TEI) has the route, the fields, their
defaults and the response shapes are TEI's (docs/openapi.json and router/src/http/types.rs of TEI 1.x,
including the later ``dimensions`` and token-id inputs); /fill-mask and /zero-shot take the arguments
of this project's pipelines and return their output format.

Types are strict: ``"normalize": "yes"`` or ``"inputs": 3`` is a 422, not a silent conversion.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ERROR_RESPONSES", "OPENAI_ERROR_RESPONSES", "DecodeRequest", "EmbedAllRequest", "EmbedRequest", "ErrorResponse",
    "FillMaskRequest", "Info", "OpenAICompatErrorResponse", "OpenAICompatRequest", "OpenAICompatResponse",
    "PredictRequest", "Prediction", "Rank", "RerankRequest", "SimilarityRequest", "SimpleToken", "TokenizeRequest",
    "ZeroShotRequest", "ZeroShotResult", "id_rows", "split_inputs",
]

TextOrTexts = str | list[str]
TokenIds = list[Annotated[int, Field(ge=0)]]
InputItem = str | TokenIds
# TEI's `Input`: one text, one list of token ids, or a batch mixing both
Inputs = str | TokenIds | list[InputItem]
Pair = Annotated[list[str], Field(min_length=2, max_length=2, description="a pair of strings")]
OneOrPair = Annotated[list[str], Field(min_length=1, max_length=2, description="one string or a pair")]
Direction = Literal["Right", "Left", "right", "left"]

TRUNCATE_HELP = ("cut inputs longer than the server's max_input_length instead of refusing them with 413; "
                 "null: the server's --auto-truncate setting")
INPUTS_HELP = ("one text, a batch of texts, or token ids (a list of ints, or a batch mixing texts and id lists); "
               "token ids are used as given: no [CLS]/[SEP] is added")
PROMPT_HELP = ("TEI's sentence-transformers prompt name; this server has no prompts, so any value other than null "
               "is refused (422): prepend the prompt text to the inputs instead")
DIMENSIONS_HELP = ("keep the first `dimensions` values of each vector (Matryoshka), before normalising; "
                   "null: all of them")


def split_inputs(inputs: str | list) -> list[str | list[int]]:
    """TEI's `Input` as a list of items: a text or a list of ints is one item; any other list is a batch
    (an empty list is an empty batch)."""
    if isinstance(inputs, str):
        return [inputs]
    if inputs and all(isinstance(x, int) for x in inputs):
        return [list(inputs)]
    return list(inputs)


def id_rows(ids: list) -> list[list[int]]:
    """TEI's `InputIds`: a list of ints (an empty one included) is one sequence, a list of lists a batch."""
    if all(isinstance(x, int) for x in ids):
        return [list(ids)]
    return [list(row) for row in ids]


class _Request(BaseModel):
    model_config = ConfigDict(strict=True)


class EmbedRequest(_Request):
    inputs: Inputs = Field(description=INPUTS_HELP, examples=["What is Deep Learning?"])
    normalize: bool = Field(True, description="L2-normalise each vector (TEI's default: true)")
    truncate: bool | None = Field(None, description=TRUNCATE_HELP)
    truncation_direction: Direction = Field("Right", description="which end of a too long input is cut")
    prompt_name: str | None = Field(None, description=PROMPT_HELP)
    dimensions: int | None = Field(None, ge=1, description=DIMENSIONS_HELP)


class EmbedAllRequest(_Request):
    inputs: Inputs = Field(description=INPUTS_HELP, examples=["What is Deep Learning?"])
    truncate: bool | None = Field(None, description=TRUNCATE_HELP)
    truncation_direction: Direction = Field("Right", description="which end of a too long input is cut")
    prompt_name: str | None = Field(None, description=PROMPT_HELP)


class SimilarityInput(_Request):
    source_sentence: str = Field(description="the text the others are compared with",
                                 examples=["What is Deep Learning?"])
    sentences: list[str] = Field(description="the texts compared with source_sentence",
                                 examples=[["What is Machine Learning?"]])


class SimilarityParameters(_Request):
    truncate: bool | None = Field(None, description=TRUNCATE_HELP)
    truncation_direction: Direction = Field("Right", description="which end of a too long input is cut")
    prompt_name: str | None = Field(None, description=PROMPT_HELP)


class SimilarityRequest(_Request):
    inputs: SimilarityInput
    parameters: SimilarityParameters | None = Field(None, description="truncation settings (null: the defaults)")


class OpenAICompatRequest(_Request):
    input: Inputs = Field(description=INPUTS_HELP, examples=["What is Deep Learning?"])
    model: str | None = Field(None, description="accepted and ignored: the server runs one model")
    user: str | None = Field(None, description="accepted and ignored")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="float: lists of numbers; base64: each vector's little-endian float32 bytes, base64")
    dimensions: int | None = Field(None, ge=1, description=DIMENSIONS_HELP)


class OpenAICompatEmbedding(BaseModel):
    object: str = Field(examples=["embedding"])
    embedding: list[float] | str = Field(description="the vector, or its float32 bytes in base64")
    index: int = Field(ge=0)


class OpenAICompatUsage(BaseModel):
    prompt_tokens: int = Field(ge=0, description="tokens of every input, [CLS]/[SEP] included")
    total_tokens: int = Field(ge=0)


class OpenAICompatResponse(BaseModel):
    object: str = Field(examples=["list"])
    data: list[OpenAICompatEmbedding]
    model: str
    usage: OpenAICompatUsage


class OpenAICompatErrorResponse(BaseModel):
    message: str
    code: int = Field(description="the HTTP status code")
    type: str = Field(description="validation, overloaded, backend, unhealthy, timeout or tokenizer")


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
    prompt_name: str | None = Field(None, description=PROMPT_HELP)


class DecodeRequest(_Request):
    ids: TokenIds | list[TokenIds] = Field(description="one sequence of token ids or a batch of them",
                                           examples=[[1, 163, 69, 2]])
    skip_special_tokens: bool = Field(True, description="leave out [CLS], [SEP], [PAD], ... (TEI's default: true)")


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
EmbedAllResponse = list[list[list[float]]]   # per input, one vector per token ([CLS] and [SEP] included)
SimilarityResponse = list[float]
DecodeResponse = list[str]
PredictResponse = list[Prediction] | list[list[Prediction]]
RerankResponse = list[Rank]
TokenizeResponse = list[list[SimpleToken]]
FillMaskResponse = list[FillMaskCandidate] | list[list[FillMaskCandidate]] | list[list[list[FillMaskCandidate]]]
ZeroShotResponse = ZeroShotResult | list[ZeroShotResult]


def _error(description: str, model: type[BaseModel] = ErrorResponse) -> dict[str, Any]:
    return {"model": model, "description": description}


_ERRORS = {
    413: "too many inputs, an input over max_input_length without truncate, or a body over the size limit",
    422: "malformed JSON, wrong types, empty inputs (validation) or input the tokenizer refuses (tokenizer)",
    424: "the served model cannot answer this route, or inference failed",
    429: "more requests in flight than --max-concurrent-requests",
    503: "the server is shutting down",
    504: "the request took longer than --request-timeout",
}
# the documented error answers of the inference routes (OpenAPI `responses`)
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {code: _error(text) for code, text in _ERRORS.items()}
OPENAI_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: _error(text, OpenAICompatErrorResponse) for code, text in _ERRORS.items()}
