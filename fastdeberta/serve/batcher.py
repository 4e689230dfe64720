"""Dynamic batching across concurrent requests: one queue, one batching task, one model thread.

Request handlers tokenize their inputs and :meth:`Batcher.submit` one :class:`WorkItem` per input;
each item carries a future that the handler awaits. A single asyncio task (the batching loop) takes
items from the front of the queue while their tokens fit the budget ``max_batch_tokens`` (and, when
set, ``max_batch_requests`` rows), groups them by kind (an embedding and a classification cannot
share a forward pass), cuts each group into length-sorted padded batches with
:func:`fastdeberta.inference.make_batches` under the same token budget (rows x longest row), and
runs each batch in a dedicated model thread, so the event loop keeps accepting and answering
requests while the model works. Results go back to each item's future.

Items whose future is already done (the request timed out or its client went away) are skipped
when a batch is formed. :meth:`Batcher.stop` lets the loop finish every item already queued
before it ends, so a graceful shutdown loses no accepted request.

Besides batched items, the queue takes *jobs*: a callable run on its own in the model thread (used
for pipelines that do their own batching: fill-mask and zero-shot classification), so every model call
happens on the one model thread, in queue order.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..inference.batching import Batch, make_batches
from .metrics import ServerMetrics

__all__ = ["JOB", "Batcher", "WorkItem"]

JOB = "job"   # the kind of an item that is a callable run alone


@dataclass
class WorkItem:
    """One input waiting for the model: its token ids, what to compute, and where the result goes."""

    kind: str                        # what run_batch computes for it, e.g. "embed", "classify"; or JOB
    input_ids: list[int]
    token_type_ids: list[int]
    future: asyncio.Future
    job: Callable[[], Any] | None = None
    enqueued: float = field(default_factory=time.perf_counter)

    @property
    def num_tokens(self) -> int:
        return len(self.input_ids)


class Batcher:
    """Queue + batching task + model thread.

    ``run_batch(kind, batch)`` is called in the model thread with a padded :class:`Batch` of items of
    one kind and returns one result per row (``results[i]`` for ``batch.indices[i]``, which index the
    rows as they were handed over, i.e. the group's items).
    """

    def __init__(self, run_batch: Callable[[str, Batch], list[Any]], *, max_batch_tokens: int,
                 max_batch_requests: int | None = None, pad_id: int = 0,
                 metrics: ServerMetrics | None = None):
        if max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be positive, got {max_batch_tokens}")
        if max_batch_requests is not None and max_batch_requests < 1:
            raise ValueError(f"max_batch_requests must be positive or None, got {max_batch_requests}")
        self.run_batch = run_batch
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_requests = max_batch_requests
        self.pad_id = pad_id
        self.metrics = metrics or ServerMetrics()
        self._pending: collections.deque[WorkItem] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._stopping = False
        self.batches_run = 0

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the batching task on the running event loop."""
        if self._task is not None:
            raise RuntimeError("the batcher is already running")
        self._wakeup = asyncio.Event()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastdeberta-model")
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="fastdeberta-batcher")

    async def stop(self) -> None:
        """Finish every queued item, then end the batching task and the model thread."""
        if self._task is None:
            return
        self._stopping = True
        self._wakeup.set()
        try:
            await self._task
        finally:
            self._task = None
            self._thread.shutdown(wait=True)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def queue_size(self) -> int:
        return len(self._pending)

    # -- submitting -------------------------------------------------------------------------------
    def submit(self, kind: str, rows: list[tuple[list[int], list[int] | None]]) -> list[asyncio.Future]:
        """Queue one item per ``(input_ids, token_type_ids)`` row; returns their futures, in order."""
        self._check_open()
        loop = asyncio.get_running_loop()
        futures = []
        for ids, types in rows:
            if not ids:
                raise ValueError("every input needs at least one token")
            item = WorkItem(kind, list(ids), list(types) if types is not None else [0] * len(ids),
                            loop.create_future())
            self._pending.append(item)
            futures.append(item.future)
        self._queued()
        return futures

    def submit_job(self, job: Callable[[], Any]) -> asyncio.Future:
        """Queue ``job()`` to run alone in the model thread; returns its future."""
        self._check_open()
        item = WorkItem(JOB, [], [], asyncio.get_running_loop().create_future(), job=job)
        self._pending.append(item)
        self._queued()
        return item.future

    def _check_open(self) -> None:
        if self._task is None or self._stopping:
            raise RuntimeError("the batcher is not running (the server is starting or shutting down)")

    def _queued(self) -> None:
        self.metrics.queue_size.set(len(self._pending))
        self._wakeup.set()

    # -- the batching loop ------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            if not self._pending:
                if self._stopping:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            items = self._take()
            self.metrics.queue_size.set(len(self._pending))
            if not items:
                continue
            if items[0].kind == JOB:
                await self._run_job(items[0])
                continue
            for kind in dict.fromkeys(item.kind for item in items):
                group = [item for item in items if item.kind == kind]
                try:
                    await self._run_group(group)
                except Exception as err:  # a bug in forming the batch: fail these items, keep the loop alive
                    for item in group:
                        if not item.future.done():
                            item.future.set_exception(err)

    def _take(self) -> list[WorkItem]:
        """Items from the front of the queue: one job alone, or inputs whose tokens fit the budget."""
        taken: list[WorkItem] = []
        tokens = 0
        while self._pending:
            item = self._pending[0]
            if item.future.done():          # timed out or cancelled while waiting: drop it
                self._pending.popleft()
                continue
            if item.kind == JOB:
                if not taken:
                    taken.append(self._pending.popleft())
                break
            full_rows = self.max_batch_requests is not None and len(taken) >= self.max_batch_requests
            if taken and (full_rows or tokens + item.num_tokens > self.max_batch_tokens):
                break
            taken.append(self._pending.popleft())
            tokens += item.num_tokens
        return taken

    async def _run_group(self, items: list[WorkItem]) -> None:
        loop = asyncio.get_running_loop()
        batches = make_batches([item.input_ids for item in items],
                               batch_size=self.max_batch_requests or len(items),
                               max_tokens=self.max_batch_tokens, pad_id=self.pad_id,
                               token_type_ids=[item.token_type_ids for item in items])
        for batch in batches:
            rows = [items[i] for i in batch.indices]
            live = [item for item in rows if not item.future.done()]
            if not live:
                continue
            start = time.perf_counter()
            for item in rows:
                self.metrics.queue_latency.observe(start - item.enqueued)
            try:
                results = await loop.run_in_executor(self._thread, self.run_batch, rows[0].kind, batch)
                if len(results) != len(rows):
                    raise RuntimeError(f"run_batch returned {len(results)} results for {len(rows)} rows")
            except Exception as err:  # the model failed: every request in the batch gets the error
                for item in rows:
                    if not item.future.done():
                        item.future.set_exception(err)
                continue
            finally:
                self._record(batch, time.perf_counter() - start)
            for item, result in zip(rows, results):
                if not item.future.done():
                    item.future.set_result(result)

    async def _run_job(self, item: WorkItem) -> None:
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        self.metrics.queue_latency.observe(start - item.enqueued)
        try:
            result = await loop.run_in_executor(self._thread, item.job)
        except Exception as err:
            if not item.future.done():
                item.future.set_exception(err)
            return
        finally:
            self.metrics.inference_latency.observe(time.perf_counter() - start)
        if not item.future.done():
            item.future.set_result(result)

    def _record(self, batch: Batch, seconds: float) -> None:
        self.batches_run += 1
        self.metrics.batch_size.observe(len(batch))
        self.metrics.batch_tokens.observe(batch.num_tokens)
        self.metrics.tokens.inc(sum(batch.lengths))
        self.metrics.inference_latency.observe(seconds)
