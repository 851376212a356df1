"""The one parallel decoder: every caller that reads many photos maps its reader over them here.

OpenCV releases the GIL while it decodes and resizes, so threads run truly in parallel. A photo
that cannot be read comes back as its ``ImageError`` in its place, never as an exception that
would stop the batch: the caller decides whether to skip it, report it or stop.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

from castinspect.core.io import ImageError

T = TypeVar("T")
Item = TypeVar("Item")


def default_workers() -> int:
    return min(8, os.cpu_count() or 1)


def _catching(fn: Callable[[Item], T]) -> Callable[[Item], T | ImageError]:
    def run(item: Item) -> T | ImageError:
        try:
            return fn(item)
        except ImageError as exc:
            return exc
    return run


class Decoder:
    """A pool of decoder threads. Use as a context manager, or through ``decode_all``."""

    def __init__(self, workers: int | None = None) -> None:
        self.pool = ThreadPoolExecutor(workers or default_workers())

    def __enter__(self) -> "Decoder":
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown()

    def map(self, fn: Callable[[Item], T], items: Iterable[Item]) -> list[T | ImageError]:
        """``fn`` of every item, in order; an item whose ``fn`` raised ImageError gets the error."""
        return list(self.pool.map(_catching(fn), items))

    def batches(self, fn: Callable[[Item], T], items: Iterable[Item], batch_size: int,
                prefetch: int = 2) -> Iterator[tuple[list[Item], list[T | ImageError]]]:
        """(batch of items, their results) in order, as a pipeline: while the caller works on one
        batch, the next ``prefetch`` are already being decoded. Memory holds at most 1 + prefetch
        batches, however many items come in: ``items`` may be a generator over a million files."""
        items = iter(items)
        run = _catching(fn)
        pending: deque[tuple[list[Item], list[Future]]] = deque()

        def submit() -> None:
            batch = [item for _, item in zip(range(batch_size), items)]
            if batch:
                pending.append((batch, [self.pool.submit(run, item) for item in batch]))

        for _ in range(max(1, prefetch)):
            submit()
        while pending:
            batch, futures = pending.popleft()
            submit()  # keeps ``prefetch`` batches decoding while this one is worked on
            yield batch, [f.result() for f in futures]


def decode_all(fn: Callable[[Item], T], items: Iterable[Item], workers: int | None = None) -> list[T | ImageError]:
    """``Decoder.map`` on a pool of its own."""
    with Decoder(workers) as decoder:
        return decoder.map(fn, items)
