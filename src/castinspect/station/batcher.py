"""Dynamic micro-batching: concurrent requests judged in one model call, as Triton does.

Each request's photo is decoded on the station's decode threads (``service.Slots``); its model
input then joins a queue, and one judging thread takes whatever has gathered — at most
``max_batch`` inputs, waiting at most ``max_wait`` seconds after the first for more, and only
while other requests are still being decoded (``expect``) — and judges them in one backend
call. So a lone request does not wait at all; under load the calls grow, and a model's cost per
photo falls with the batch. Inputs prepared for different models (a
promotion between the decode and the judgement) are judged by their own model.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

MAX_BATCH = 16
MAX_WAIT = 0.002  # seconds


@dataclass(eq=False)
class _Item:
    predictor: object
    x: np.ndarray
    xa: np.ndarray | None  # the anomaly model's input, where the station has one
    done: Future = field(default_factory=Future)


class Batcher:
    """The judging thread and its queue. ``submit`` returns a future of (probs row, familiarity
    or None, the anomaly model's p(defect) or None, the batch's size): a station's anomaly model
    judges the same batch in the same thread."""

    def __init__(self, max_batch: int = MAX_BATCH, max_wait: float = MAX_WAIT) -> None:
        if max_batch < 1 or max_wait < 0:
            raise ValueError("a batch holds at least one photo and waits no negative time")
        self.max_batch, self.max_wait = max_batch, max_wait
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self.calls = self.photos = 0
        self.coming = 0  # requests being decoded that will join: worth waiting for
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="micro-batcher", daemon=True)
        self._thread.start()

    def expect(self) -> None:
        """A request starts decoding: its input will follow (``submit``), or not (``cancel``)."""
        with self._lock:
            self.coming += 1

    def cancel(self) -> None:
        with self._lock:
            self.coming -= 1

    def submit(self, predictor, x: np.ndarray, xa: np.ndarray | None = None) -> Future:
        item = _Item(predictor, x, xa)
        with self._lock:
            self.coming -= 1
            self._queue.put(item)
        return item.done

    def _gather(self, first: _Item) -> list[_Item]:
        items, deadline = [first], time.perf_counter() + self.max_wait
        while len(items) < self.max_batch:
            if self.coming <= 0 and self._queue.empty():
                break  # nobody else on the way: waiting would only add latency
            left = deadline - time.perf_counter()
            try:
                item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # closing: judge what is here, then stop
                break
            items.append(item)
        return items

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            items = self._gather(first)
            for predictor in {id(i.predictor): i.predictor for i in items}.values():
                group = [i for i in items if i.predictor is predictor]
                try:
                    x = np.stack([i.x for i in group])
                    probs, familiarity = predictor.judge(x)
                    anomaly = None if group[0].xa is None else predictor.anomaly_scores(np.stack([i.xa for i in group]))
                except Exception as exc:  # noqa: BLE001 - each waiter hears it
                    for i in group:
                        i.done.set_exception(exc)
                    continue
                self.calls += 1
                self.photos += len(group)
                for k, i in enumerate(group):
                    i.done.set_result((probs[k], None if familiarity is None else familiarity[k],
                                       None if anomaly is None else anomaly[k], len(group)))

    def state(self) -> dict:
        return {"max_batch": self.max_batch, "max_wait_ms": self.max_wait * 1000, "calls": self.calls,
                "photos": self.photos, "mean_batch": self.photos / self.calls if self.calls else None}

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(2)
