"""Checks on what callers hand the tokenizer: texts, pre-split words and keyword arguments.

Every check runs before any text is encoded, so a bad item anywhere in a batch fails the whole call
with nothing half-done, and the tokenizer's state is never touched by a failed call.

Text that UTF-8 cannot encode -- a lone surrogate code point such as ``"abc\\ud800"``, which JSON
decoders and some web frameworks let through -- is refused with :class:`UnencodableTextError`, naming
the argument, the item and the character position. fastdeberta never replaces such characters
silently: a replacement would change the ids and shift the offsets of everything after it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import InputTypeError, InvalidInputError

PADDING_CHOICES = {
    True: "longest",
    False: None,
    "longest": "longest",
    "max_length": "max_length",
    "do_not_pad": None,
}
TRUNCATION_CHOICES = {
    True: "longest_first",
    False: None,
    "longest_first": "longest_first",
    "only_first": "only_first",
    "only_second": "only_second",
    "do_not_truncate": None,
}
SIDES = ("right", "left")
TENSOR_KINDS = (None, "pt", "np")


class UnencodableTextError(InvalidInputError):
    """Text holding a code point that UTF-8 cannot encode (a lone surrogate, U+D800..U+DFFF).

    ``argument`` names where the text came from (``"text[3]"``, ``"text_pair"``, ``"text[0][2]"`` for
    a pre-split word), ``position`` is the index of the first such character in that string and
    ``character`` the character itself.
    """

    def __init__(self, argument: str, position: int, character: str):
        self.argument, self.position, self.character = argument, position, character
        super().__init__(
            f"{argument} holds a lone surrogate U+{ord(character):04X} at character {position}, which "
            "cannot be encoded as UTF-8, so it cannot be tokenized. Repair the text before tokenizing, "
            "e.g. text.encode('utf-16', 'surrogatepass').decode('utf-16', 'replace') joins valid "
            "surrogate pairs and turns lone ones into U+FFFD."
        )


class TokenIdError(InvalidInputError, IndexError):
    """A token id outside the vocabulary (also an ``IndexError``, as list indexing would raise)."""


def check_encodable(text: str, argument: str) -> None:
    """Raise :class:`UnencodableTextError` if ``text`` holds a lone surrogate."""
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise UnencodableTextError(argument, err.start, text[err.start]) from None


def check_text(value: Any, argument: str) -> str:
    """``value`` as a str that can be encoded, or a clear error."""
    if not isinstance(value, str):
        raise InputTypeError(f"{argument} must be a str, got {type(value).__name__}: {value!r:.60}")
    check_encodable(value, argument)
    return value


def check_words(value: Any, argument: str) -> list[str]:
    """A pre-split text (``is_split_into_words=True``): a list or tuple of str."""
    if not isinstance(value, (list, tuple)):
        raise InputTypeError(
            f"{argument} must be a list of words (str) with is_split_into_words=True, got "
            f"{type(value).__name__}: {value!r:.60}"
        )
    return [check_text(word, f"{argument}[{i}]") for i, word in enumerate(value)]


def split_batch(value: Any, argument: str, split_into_words: bool) -> tuple[list[Any], bool]:
    """The examples of ``text`` or ``text_pair`` and whether they came as a batch.

    Plain text: a str is one example, a list/tuple of str a batch. Pre-split words: a list of str is
    one example, a list of lists a batch (the rule transformers follows).
    """
    if split_into_words:
        batched = isinstance(value, (list, tuple)) and len(value) > 0 and isinstance(value[0], (list, tuple))
        if not batched:
            return [check_words(value, argument)], False
        return [check_words(item, f"{argument}[{i}]") for i, item in enumerate(value)], True
    if isinstance(value, str):
        return [check_text(value, argument)], False
    if not isinstance(value, (list, tuple)):
        raise InputTypeError(f"{argument} must be a str or a list of str, got {type(value).__name__}")
    return [check_text(item, f"{argument}[{i}]") for i, item in enumerate(value)], True


def check_flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InputTypeError(f"{name} must be True or False, got {type(value).__name__}: {value!r:.60}")
    return value


def check_optional_flag(value: Any, name: str, default: bool) -> bool:
    return default if value is None else check_flag(value, name)


def check_count(value: Any, name: str, minimum: int = 1, allow_none: bool = True) -> int | None:
    """An int >= ``minimum`` (bools refused: ``True`` is not a length)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputTypeError(f"{name} must be an int, got {type(value).__name__}: {value!r:.60}")
    if value < minimum:
        raise InvalidInputError(f"{name} must be at least {minimum}, got {value}")
    return value


def check_choice(value: Any, name: str, choices: Any) -> Any:
    """One of ``choices`` (a tuple, or a dict whose value is returned); 1 and 0 do not pass for True/False."""
    if not (value is None or isinstance(value, (str, bool))) or value not in choices:
        raise InvalidInputError(f"{name} must be one of {list(choices)}, got {value!r:.60}")
    return choices[value] if isinstance(choices, dict) else value


def as_ids(values: Any, what: str) -> list[int]:
    """A sequence of token ids (list, tuple, tensor or array) as a list of int, or a clear error."""
    if hasattr(values, "tolist"):
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise InputTypeError(f"{what} must be a sequence of int token ids, got {type(values).__name__}")
    return [as_id(v, f"{what}[{i}]") for i, v in enumerate(values)]


def as_id(value: Any, what: str) -> int:
    if hasattr(value, "ndim") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputTypeError(f"{what} must be an int token id, got {type(value).__name__}: {value!r:.40}")
    return value


def unknown_keywords_message(unknown: dict[str, Any], where: str, function: Any) -> str:
    """Name the keywords a method does not take, with the closest accepted name for each."""
    import difflib
    import inspect

    accepted = [n for n in inspect.signature(function).parameters if not n.startswith("_") and n != "unknown"]
    hints = []
    for name in sorted(unknown):
        close = difflib.get_close_matches(name, accepted, n=1)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"The {where} got unexpected keyword argument(s) {', '.join(hints)}. It takes: {', '.join(accepted)}."
