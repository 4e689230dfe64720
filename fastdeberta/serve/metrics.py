"""Prometheus metrics in the text exposition format, without a client library.

Three metric kinds, each a family of time series keyed by label values:

* :class:`Counter` -- a monotonically increasing total (requests, tokens);
* :class:`Gauge` -- a value that goes up and down (queue size, requests in flight);
* :class:`Histogram` -- observations counted into cumulative ``le`` buckets plus ``_sum`` and
  ``_count`` (latencies, batch sizes).

Updates come from the event loop and from the model thread, so each family guards its series with a
lock. :meth:`Registry.render` writes the whole registry as ``text/plain; version=0.0.4``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

__all__ = ["CONTENT_TYPE", "Counter", "Gauge", "Histogram", "Registry", "ServerMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TOKEN_BUCKETS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Family:
    kind = ""

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()):
        self.name, self.help, self.labelnames = name, help_text, tuple(labelnames)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"metric {self.name} takes labels {self.labelnames}, got {sorted(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Family):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()):
        super().__init__(name, help_text, labelnames)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"a counter only goes up; got {amount}")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_labels(self.labelnames, k)} {_number(v)}" for k, v in items]


class Gauge(Counter):
    kind = "gauge"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        self.inc(-amount, **labels)

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)


class Histogram(_Family):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: Sequence[float], labelnames: Sequence[str] = ()):
        super().__init__(name, help_text, labelnames)
        self.buckets = tuple(sorted(buckets)) + (math.inf,)
        self._series: dict[tuple[str, ...], list[float]] = {}   # key -> per-bucket counts + [sum]

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            series = self._series.setdefault(key, [0.0] * (len(self.buckets) + 1))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    series[i] += 1
                    break
            series[-1] += value

    def count(self, **labels: str) -> int:
        with self._lock:
            series = self._series.get(self._key(labels))
            return int(sum(series[:-1])) if series else 0

    def render(self) -> list[str]:
        lines = self.header()
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        for key, series in items:
            cumulative = 0.0
            for bound, n in zip(self.buckets, series):
                cumulative += n
                le = 'le="' + _number(bound) + '"'
                lines.append(f"{self.name}_bucket{_labels(self.labelnames, key, le)} {_number(cumulative)}")
            lines.append(f"{self.name}_sum{_labels(self.labelnames, key)} {_number(series[-1])}")
            lines.append(f"{self.name}_count{_labels(self.labelnames, key)} {_number(cumulative)}")
        return lines


class Registry:
    """An ordered set of metric families, rendered together."""

    def __init__(self) -> None:
        self._families: list[_Family] = []

    def add(self, family: _Family) -> _Family:
        self._families.append(family)
        return family

    def render(self) -> str:
        lines: list[str] = []
        for family in self._families:
            lines.extend(family.render())
        return "\n".join(lines) + "\n"


class ServerMetrics:
    """The metrics one server exports (names prefixed ``fastdeberta_``)."""

    def __init__(self) -> None:
        self.registry = Registry()
        add = self.registry.add
        self.requests = add(Counter("fastdeberta_requests_total", "HTTP requests by route and status code",
                                    ("route", "status")))
        self.request_latency = add(Histogram("fastdeberta_request_duration_seconds",
                                             "time from request arrival to response, by route",
                                             LATENCY_BUCKETS, ("route",)))
        self.in_flight = add(Gauge("fastdeberta_requests_in_flight",
                                   "inference requests admitted and not yet answered"))
        self.queue_size = add(Gauge("fastdeberta_queue_size", "inputs waiting for a batch"))
        self.batch_size = add(Histogram("fastdeberta_batch_size", "inputs per model forward pass", SIZE_BUCKETS))
        self.batch_tokens = add(Histogram("fastdeberta_batch_tokens",
                                          "padded tokens (rows x longest row) per forward pass", TOKEN_BUCKETS))
        self.tokens = add(Counter("fastdeberta_tokens_total", "real (unpadded) tokens run through the model"))
        self.inference_latency = add(Histogram("fastdeberta_batch_duration_seconds",
                                               "time of one model forward pass", LATENCY_BUCKETS))
        self.queue_latency = add(Histogram("fastdeberta_queue_duration_seconds",
                                           "time an input waited in the queue before its batch ran",
                                           LATENCY_BUCKETS))

    def render(self) -> str:
        return self.registry.render()
