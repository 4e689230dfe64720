"""The server's errors: each one knows its HTTP status and TEI's ``error_type``.

Every error response has TEI's body ``{"error": "<message>", "error_type": "<type>"}``:

=====  ================  ==================================================================
code   error_type        when
=====  ================  ==================================================================
413    ``validation``    too many inputs in one request, an input longer than the limit
                         without ``truncate``, or a request body over the size limit
422    ``validation``    malformed JSON, wrong types, empty inputs, a missing [MASK], ...
422    ``tokenizer``     the tokenizer refused the input
424    ``backend``       the route needs another kind of model (e.g. /predict on an encoder)
                         or the model failed
429    ``overloaded``    more requests in flight than ``--max-concurrent-requests``
503    ``unhealthy``     the server is shutting down (or its batching task stopped)
504    ``timeout``       the request waited longer than ``--request-timeout``
=====  ================  ==================================================================

TEI answers every validation error with 413; here 413 is kept for limits ("too large") and other
invalid input gets 422, the code FastAPI and most HTTP clients use for a body that does not validate.

On the OpenAI-compatible route (``/v1/embeddings``, alias ``/embeddings``) the same errors have TEI's
OpenAI-style body ``{"message": "<message>", "code": <status>, "type": "<type>"}`` instead.
"""

from __future__ import annotations

__all__ = ["OPENAI_PATHS", "BackendError", "InputTooLarge", "InvalidInput", "Overloaded", "ServeError", "ShuttingDown",
           "Timeout", "TokenizerError", "Unsupported", "error_body"]

OPENAI_PATHS = frozenset({"/v1/embeddings", "/embeddings"})


def error_body(path: str, status: int, message: str, error_type: str) -> dict[str, str | int]:
    """The error body a client of ``path`` expects: TEI's ``{"error", "error_type"}``, or on the
    OpenAI-compatible route TEI's ``{"message", "code", "type"}``."""
    if path in OPENAI_PATHS:
        return {"message": message, "code": status, "type": error_type}
    return {"error": message, "error_type": error_type}


class ServeError(Exception):
    status = 500
    error_type = "backend"

    def body(self, path: str = "") -> dict[str, str | int]:
        return error_body(path, self.status, str(self), self.error_type)


class InputTooLarge(ServeError, ValueError):
    status = 413
    error_type = "validation"


class InvalidInput(ServeError, ValueError):
    status = 422
    error_type = "validation"


class TokenizerError(InvalidInput):
    error_type = "tokenizer"


class BackendError(ServeError):
    status = 424
    error_type = "backend"


class Unsupported(BackendError):
    """The route needs another kind of model than the one served."""


class Overloaded(ServeError):
    status = 429
    error_type = "overloaded"


class ShuttingDown(ServeError):
    status = 503
    error_type = "unhealthy"


class Timeout(ServeError):
    status = 504
    error_type = "timeout"
