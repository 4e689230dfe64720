"""Entity-level precision / recall / F1 over tag sequences, in seqeval's conventions.

An entity is ``(type, first_token, last_token)`` within one sentence; a predicted entity counts only
when type and both boundaries equal a gold entity's. Two modes:

* ``strict`` (seqeval ``mode="strict"``): only well-formed entities count. IOB2: ``B-X`` followed by
  any number of ``I-X``; an ``I-X`` that does not continue an entity of type X is ignored. BIOES:
  ``S-X`` alone, or ``B-X I-X* E-X``; a ``B-X`` never closed by ``E-X`` gives no entity.
* ``default`` (seqeval's default, conlleval's rule): an entity starts at ``B-X``/``S-X``, or at
  ``I-X``/``E-X`` after a tag of another type or ``O``, and ends before ``O``, ``B-``, ``S-`` or a
  tag of another type (and after ``E-X``/``S-X``).

Scores per type, and micro-averaged over all entities ("overall"), as seqeval's classification report.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InvalidInputError

__all__ = ["SCHEMES", "detect_scheme", "entity_scores", "extract_entities"]

SCHEMES = ("IOB2", "BIOES")


def _split(tag: str) -> tuple[str, str]:
    """("B", "PER") from "B-PER"; ("O", "") for "O"; a tag without prefix is read as inside ("I", tag)."""
    if tag == "O" or not tag:
        return "O", ""
    if len(tag) > 1 and tag[1] in "-_" and tag[0] in "BIES":
        return tag[0], tag[2:]
    return "I", tag


def detect_scheme(sequences: Sequence[Sequence[str]]) -> str:
    """BIOES when any tag starts with E- or S-, else IOB2."""
    for tags in sequences:
        for tag in tags:
            if _split(tag)[0] in ("E", "S"):
                return "BIOES"
    return "IOB2"


def extract_entities(tags: Sequence[str], scheme: str = "IOB2", mode: str = "strict") -> list[tuple[str, int, int]]:
    """``(type, start, end)`` entities of one tag sequence (``end`` inclusive), in order."""
    if scheme not in SCHEMES:
        raise InvalidInputError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    if mode == "strict":
        return _strict_bioes(tags) if scheme == "BIOES" else _strict_iob2(tags)
    if mode == "default":
        return _conlleval(tags)
    raise InvalidInputError(f"mode must be 'strict' or 'default', got {mode!r}")


def _strict_iob2(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    entities = []
    i = 0
    while i < len(tags):
        prefix, kind = _split(tags[i])
        if prefix != "B":
            i += 1
            continue
        end = i
        while end + 1 < len(tags) and _split(tags[end + 1]) == ("I", kind):
            end += 1
        entities.append((kind, i, end))
        i = end + 1
    return entities


def _strict_bioes(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    entities = []
    i = 0
    while i < len(tags):
        prefix, kind = _split(tags[i])
        if prefix == "S":
            entities.append((kind, i, i))
            i += 1
            continue
        if prefix != "B":
            i += 1
            continue
        end = i + 1
        while end < len(tags) and _split(tags[end]) == ("I", kind):
            end += 1
        if end < len(tags) and _split(tags[end]) == ("E", kind):
            entities.append((kind, i, end))
            i = end + 1
        else:
            i = end         # malformed: no entity; scan on from the tag that broke it
    return entities


def _conlleval(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    entities = []
    start: int | None = None
    current = ""
    previous = "O"
    for i, tag in enumerate([*tags, "O"]):
        prefix, kind = _split(tag)
        ends = start is not None and (prefix in ("O", "B", "S") or kind != current or previous in ("E", "S"))
        if ends:
            entities.append((current, start, i - 1))
            start = None
        starts = prefix in ("B", "S") or (prefix in ("I", "E") and (start is None or kind != current))
        if prefix != "O" and starts:
            start, current = i, kind
        previous = prefix
    return entities


def _prf(tp: int, n_pred: int, n_gold: int) -> dict[str, float]:
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "number": n_gold}


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], scheme: str | None = None,
                  mode: str = "strict") -> dict[str, dict[str, float]]:
    """Per-type and ``"overall"`` (micro) precision / recall / F1 / number of gold entities.

    ``gold`` and ``predicted``: one tag list per sentence, equal lengths. ``scheme``: None detects it
    from the gold tags. Also returns ``"overall"["accuracy"]``: the fraction of tokens tagged right.
    """
    if len(gold) != len(predicted):
        raise InvalidInputError(f"{len(gold)} gold sentences but {len(predicted)} predicted")
    scheme = scheme or detect_scheme(gold)
    gold_set: set[tuple[int, str, int, int]] = set()
    pred_set: set[tuple[int, str, int, int]] = set()
    correct_tokens = total_tokens = 0
    for s, (g, p) in enumerate(zip(gold, predicted)):
        if len(g) != len(p):
            raise InvalidInputError(f"sentence {s}: {len(g)} gold tags but {len(p)} predicted")
        gold_set.update((s, *e) for e in extract_entities(g, scheme, mode))
        pred_set.update((s, *e) for e in extract_entities(p, scheme, mode))
        correct_tokens += sum(1 for a, b in zip(g, p) if a == b)
        total_tokens += len(g)
    hits = gold_set & pred_set
    out = {}
    for kind in sorted({e[1] for e in gold_set | pred_set}):
        out[kind] = _prf(sum(1 for e in hits if e[1] == kind), sum(1 for e in pred_set if e[1] == kind),
                         sum(1 for e in gold_set if e[1] == kind))
    out["overall"] = _prf(len(hits), len(pred_set), len(gold_set))
    out["overall"]["accuracy"] = correct_tokens / total_tokens if total_tokens else 0.0
    return out
