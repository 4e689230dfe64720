"""Server limits (TEI's names and defaults where TEI has the setting) and the default model."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..shipped import DEFAULT_MODEL as SHIPPED_DEFAULT

__all__ = ["DEFAULT_MODEL", "ENGINES", "TASKS", "ServeSettings", "default_model"]

# --task choices -> the model task to load (None: what config.json's architectures say)
TASKS: dict[str, str | None] = {
    "auto": None,
    "embed": "base",
    "classify": "sequence-classification",
    "rerank": "sequence-classification",
    "zero-shot": "sequence-classification",
    "fill-mask": "masked-lm",
}

ENGINES = ("torch", "onnxruntime")

# The checkpoint `fastdeberta serve` runs when --model is not given: the model shipped in the package
# (its discriminator, an encoder: /embed; with --task fill-mask its generator).
DEFAULT_MODEL: str | None = SHIPPED_DEFAULT


def default_model() -> str | None:
    """The model served without --model, or None when there is none yet."""
    return DEFAULT_MODEL


@dataclass(frozen=True)
class ServeSettings:
    """Limits of one server.

    max_batch_tokens: padded tokens (rows x longest row) per forward pass; also the most tokens the
        batching loop takes from the queue at once. Must hold one input of max_input_length.
    max_batch_requests: most inputs per forward pass (None: only the token budget limits it).
    max_concurrent_requests: inference requests admitted at once; the next one gets 429.
    max_client_batch_size: most inputs in one request (texts of /rerank); more gets 413.
    auto_truncate: cut too long inputs when a request does not say ("truncate": null).
    request_timeout: seconds a request may take from admission to answer; then 504.
    payload_limit: most bytes in a request body; more gets 413 (TEI's default: 2 MB).
    tokenization_workers: threads that tokenize, beside the one model thread.
    """

    max_batch_tokens: int = 16384
    max_batch_requests: int | None = None
    max_concurrent_requests: int = 512
    max_client_batch_size: int = 32
    auto_truncate: bool = False
    request_timeout: float = 60.0
    payload_limit: int = 2_000_000
    tokenization_workers: int = 1

    def __post_init__(self) -> None:
        positive = ("max_batch_tokens", "max_concurrent_requests", "max_client_batch_size", "payload_limit",
                    "tokenization_workers")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.max_batch_requests is not None and self.max_batch_requests < 1:
            raise ValueError(f"max_batch_requests must be a positive int or None, got {self.max_batch_requests!r}")
        if not self.request_timeout > 0:
            raise ValueError(f"request_timeout must be positive seconds, got {self.request_timeout!r}")

    def as_dict(self) -> dict:
        return asdict(self)
