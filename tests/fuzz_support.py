"""Shared pieces of the property-based fuzz suite (tests/test_fuzz_*.py).

The property every fuzz test checks: a call either succeeds with a correct result, or raises one of
the documented error types (:class:`fastdeberta.FastDebertaError` and its subclasses) with a message —
never another exception, never a hang, never a changed file on failure.

Profiles (Hypothesis settings, chosen with the environment variable ``FASTDEBERTA_FUZZ``):

* ``ci`` (default): derandomised (the same examples on every run and machine, so CI is reproducible),
  few examples per test, no example database written; the whole fuzz suite runs in well under a minute.
* ``long`` (``make fuzz``): random seeds, ``LONG_FACTOR`` times the examples, for hunting new failures.
  A failure prints the ``@reproduce_failure`` blob to paste above the test.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings

from fastdeberta.errors import FastDebertaError

PROFILE_VARIABLE = "FASTDEBERTA_FUZZ"
LONG_FACTOR = 25
_COMMON = dict(
    database=None,
    print_blob=True,
    # Examples build models and files; a generous deadline still catches a hang or a quadratic blow-up
    # without failing on a loaded 2-core CI machine.
    deadline=timedelta(seconds=20),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)
settings.register_profile("fastdeberta-ci", derandomize=True, **_COMMON)
settings.register_profile("fastdeberta-long", derandomize=False, **_COMMON)


def long_run() -> bool:
    return os.environ.get(PROFILE_VARIABLE, "ci").strip().lower() == "long"


def fuzz_settings(examples: int) -> settings:
    """Settings for one fuzz test: ``examples`` in the default profile, LONG_FACTOR x in the long one."""
    profile = settings.get_profile("fastdeberta-long" if long_run() else "fastdeberta-ci")
    return settings(profile, max_examples=examples * (LONG_FACTOR if long_run() else 1))


def documented_outcome(call: Callable[[], Any]) -> tuple[Any, FastDebertaError | None]:
    """Run ``call``; return (result, None), or (None, error) for a documented error with a message.

    Any other exception propagates, so Hypothesis reports it (and shrinks the example).
    """
    try:
        return call(), None
    except FastDebertaError as err:
        assert str(err).strip(), f"{type(err).__name__} raised without a message"
        return None, err


def digest(folder: Path) -> dict[str, str]:
    """name -> sha256 of every file under ``folder``: compared before and after a call."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}
