"""The log's counts from its counters, kept in the same transaction as the rows (``writer.count``)
and moved by people's dispositions (``review``): the cost depends on neither the size of the log
nor how busy the line is.

Two views of the same parts: the *final* decisions (a person's disposition where there is one,
else the model's; ``review`` there means a part still awaiting a person), which the reject rate is
made of, and the *model's* own decisions and labels.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from castinspect.core.decision import DECISIONS

WINDOWS: tuple[tuple[str, timedelta | None], ...] = (
    ("last_hour", timedelta(hours=1)), ("last_24h", timedelta(days=1)), ("all", None))


def _spans(since: str) -> tuple[str, str]:
    """The minute ``since`` starts at, and the first whole hour after it: the minutes up to that
    hour are read from the per-minute counters, the rest from the per-hour ones."""
    start = datetime.fromisoformat(since[:16]).replace(tzinfo=None)
    hour = (start + timedelta(minutes=59)).replace(minute=0).isoformat(timespec="hours")
    return since[:16], hour


def _summed(log, prefix: str, columns: str, since: str | None) -> list[tuple]:
    """(``columns``..., n) from the counters ``prefix_*``: all time, or from ``since`` on (the
    minutes up to the next whole hour, then whole hours)."""
    if not since:
        return log.query(f"SELECT {columns}, SUM(n) FROM {prefix}_totals GROUP BY {columns}")
    minute, hour = _spans(since)
    return log.query(
        f"SELECT {columns}, SUM(n) FROM ("
        f"SELECT {columns}, n FROM {prefix}_minutes WHERE minute >= ? AND minute < ? "
        f"UNION ALL SELECT {columns}, n FROM {prefix}_hours WHERE hour >= ?) AS spans "
        f"GROUP BY {columns}", [minute, hour + ":00", hour])


def model_counts(log, since: str | None = None) -> tuple[dict[str, int], dict[str, int]]:
    """The model's decisions and labels (class, or defect type), all time or from ``since`` (an
    ISO time, to the minute) on."""
    decisions, labels = {d: 0 for d in DECISIONS}, {}
    for decision, label, n in _summed(log, "inspection", "decision, label", since):
        if decision:
            decisions[decision] = decisions.get(decision, 0) + int(n)
        if label:
            labels[label] = labels.get(label, 0) + int(n)
    return decisions, dict(sorted(labels.items()))


def final_counts(log, since: str | None = None) -> dict[str, int]:
    """The final decisions (``review``: awaiting a person), all time or from ``since`` on."""
    out = {d: 0 for d in DECISIONS}
    for decision, n in _summed(log, "final", "decision", since):
        out[decision] = out.get(decision, 0) + int(n)
    return out


def hourly(log, since: str) -> list[dict]:
    """The final decisions per hour from the hour of ``since`` on (the operator screen's trend)."""
    rows = log.query("SELECT hour, decision, n FROM final_hours WHERE hour >= ? ORDER BY hour", [since[:13]])
    hours: dict[str, dict] = {}
    for hour, decision, n in rows:
        hours.setdefault(hour, {"hour": hour, **{d: 0 for d in DECISIONS}})[decision] += int(n)
    return list(hours.values())


def summary(log, now: datetime | None = None, windows=WINDOWS) -> dict:
    """Per window (a span back from ``now``, None for all time, or an ISO time to start from): the final decisions, with the parts awaiting review apart; the reject rate of
    the decided parts (defective / (ok + defective)): a part still awaiting a person is neither;
    the model's own decisions and labels."""
    now = now or datetime.now(timezone.utc)
    out = {}
    for name, span in windows:
        since = span if isinstance(span, str) else (now - span).isoformat(timespec="milliseconds") if span else None
        final = final_counts(log, since)
        model, labels = model_counts(log, since)
        decided = final["ok"] + final["defective"]
        out[name] = {"ok": final["ok"], "defective": final["defective"], "awaiting_review": final["review"],
                     "total": sum(final.values()), "decided": decided,
                     "reject_rate": final["defective"] / decided if decided else None,
                     "model": model, "labels": labels}
    return out
