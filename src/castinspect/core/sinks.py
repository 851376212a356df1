"""Writing records as they come: CSV rows, one JSON array, or JSON lines.

A million records stream out with bounded memory: each is written and flushed, then handed back
to the caller (who may print a summary, draw a heatmap, count failures)."""

from __future__ import annotations

import csv
import json
from typing import IO, Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
FORMATS = ("csv", "json", "jsonl")


def write_records(records: Iterable[T], fmt: str, stream: IO[str], fields: list[str],
                  as_dict: Callable[[T], dict] = lambda r: r) -> Iterator[T]:
    """Write each record (``as_dict`` of it) to ``stream`` in ``fmt``; yield the records on.
    CSV holds ``fields`` only, nested values as JSON; JSON holds every key."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown record format {fmt!r}; choose from {', '.join(FORMATS)}")
    writer = csv.DictWriter(stream, fieldnames=fields, extrasaction="ignore") if fmt == "csv" else None
    if writer:
        writer.writeheader()
    elif fmt == "json":
        stream.write("[")
    for n, r in enumerate(records):
        d = as_dict(r)
        if writer:
            writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in d.items()})
        elif fmt == "json":
            stream.write(("," if n else "") + "\n  " + json.dumps(d))
        else:
            stream.write(json.dumps(d) + "\n")
        stream.flush()
        yield r
    if fmt == "json":
        stream.write("\n]\n")
