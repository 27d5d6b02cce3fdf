"""Dynamic batching for `trendnlp serve`: concurrent requests wait in one queue and run as one model call.

A product page sends one record per request; scored alone, each request pays a whole model call (tokenizer,
encoder pass, head) for one row, and the model lock makes 32 of them wait in line. The `Batcher` gathers the
requests that arrive while the model is busy (plus up to `max_wait_ms` after the first one, for the ones
about to arrive) into one call of up to `max_records` records, as Ray Serve's `@serve.batch`, TorchServe's
`batch_size` / `max_batch_delay` and Triton's dynamic batcher do. It waits only while the server holds
requests that are not in the batch yet (`in_flight`): a lone client never pays the wait. Each request gets back its own rows, in
order. Records are validated per request before they are queued, so a bad record is its own request's 422
and never reaches a batch; a model call that fails anyway is retried request by request, so one request's
failure never fails its batch-mates.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, NamedTuple


class Job(NamedTuple):
    records: list[dict]
    future: Future


class Batcher:
    """One worker thread turning queued requests into batched model calls.

    Args:
        run: run(records) -> (rows, context): one model call; `rows` is indexable by record (e.g. an
            (n, n_labels) array) and `context` is handed to every request of the batch (the model version
            that scored it).
        max_records: records per model call at most; a larger request runs alone.
        max_wait_ms: how long the first request of a batch waits for more (0 still gathers the requests
            already queued; `serve` turns batching off entirely for --max-wait-ms 0).
        on_batch: on_batch(n_requests, n_records) after each model call (metrics).
        in_flight: requests the server is handling now (received, not yet answered); when all of them are in
            the batch already, it runs without waiting. None: always wait up to max_wait_ms.

    >>> b = Batcher(lambda recs: ([r["x"] * 2 for r in recs], "v1"), max_records=8, max_wait_ms=1)
    >>> b.submit([{"x": 1}, {"x": 2}]).result()
    ([2, 4], 'v1')
    >>> b.stop()
    """

    def __init__(self, run: Callable[[list[dict]], tuple[Any, Any]], max_records: int = 64, max_wait_ms: float = 5.0,
                 on_batch: Callable[[int, int], None] | None = None, in_flight: Callable[[], int] | None = None):
        if max_records < 1 or max_wait_ms < 0:
            raise ValueError(f"max_records must be >= 1 and max_wait_ms >= 0, found {max_records}, {max_wait_ms}")
        self.run, self.max_records, self.max_wait = run, max_records, max_wait_ms / 1000
        self.on_batch, self.in_flight = on_batch, in_flight
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._carry: Job | None = None  # a request that did not fit the last batch: first of the next
        self._thread = threading.Thread(target=self._loop, name="trendnlp-batcher", daemon=True)
        self._thread.start()

    def submit(self, records: list[dict]) -> Future:
        """Queue one request's validated records; the future gives (its rows, the batch's context)."""
        job = Job(records, Future())
        self._queue.put(job)
        return job.future

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the queued requests, then end the worker."""
        self._queue.put(None)
        self._thread.join(timeout)

    # ---- the worker ----------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            first = self._carry or self._queue.get()
            self._carry = None
            if first is None:
                return
            jobs = self._gather(first)
            self._run(jobs)
            if jobs[-1] is None:  # stop() arrived while gathering
                return

    def _gather(self, first: Job) -> list:
        jobs, n = [first], len(first.records)
        deadline = time.monotonic() + self.max_wait
        while n < self.max_records:
            try:  # what is queued already joins at once
                job = self._queue.get_nowait()
            except queue.Empty:  # then wait out the rest of max_wait, while other requests are on their way
                left = deadline - time.monotonic()
                if left <= 0 or (self.in_flight is not None and self.in_flight() <= len(jobs)):
                    break
                try:
                    job = self._queue.get(timeout=min(left, 0.001))
                except queue.Empty:
                    continue
            if job is None:
                jobs.append(None)
                break
            if n + len(job.records) > self.max_records:
                self._carry = job
                break
            jobs.append(job)
            n += len(job.records)
        return jobs

    def _run(self, jobs: list) -> None:
        live = [j for j in jobs if j is not None and j.future.set_running_or_notify_cancel()]
        if not live:
            return
        records = [r for j in live for r in j.records]
        try:
            rows, context = self.run(records)
        except Exception as e:  # noqa: BLE001  (handed to the request; the worker stays up)
            if len(live) == 1:
                live[0].future.set_exception(e)
                return
            for j in live:  # one request's failure must not fail its batch-mates: each alone
                self._run_alone(j)
            return
        if self.on_batch:
            self.on_batch(len(live), len(records))
        start = 0
        for j in live:
            j.future.set_result((rows[start:start + len(j.records)], context))
            start += len(j.records)

    def _run_alone(self, job: Job) -> None:
        try:
            rows, context = self.run(job.records)
        except Exception as e:  # noqa: BLE001
            job.future.set_exception(e)
            return
        if self.on_batch:
            self.on_batch(1, len(job.records))
        job.future.set_result((rows, context))
