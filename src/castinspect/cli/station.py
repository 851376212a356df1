"""Commands of the inspection station: serve, the log it writes (log export), and drift."""

from __future__ import annotations

import contextlib
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from castinspect.cli.app import (
    AnomalyOpt,
    Backend,
    BackendOpt,
    ModelOpt,
    RecordFormat,
    ReviewOpt,
    ThresholdOpt,
    UnfamiliarOpt,
    anomaly_model,
    app,
    say,
    user_errors,
)
from castinspect.cli.render import write_records

MqttOpt = Annotated[Optional[str], typer.Option(metavar="URL", help="Publish every judgement to this MQTT broker (mqtt://host:1883), through an outbox in the log: nothing is lost while it is down.")]
DbOpt = Annotated[str, typer.Option(metavar="URL", help="Inspection log: a file path, sqlite:///FILE or postgresql://user@host:port/name.")]
WindowOpt = Annotated[int, typer.Option("--drift-window", metavar="N", help="Drift monitor: judgements in its rolling window.")]
BaselineOpt = Annotated[int, typer.Option("--drift-baseline", metavar="N", help="Drift monitor: the first N judgements, what p(defect) and the reject rate are held against.")]


@app.command()
def serve(
    model: ModelOpt = None,
    host: Annotated[str, typer.Option(metavar="HOST", help="Interface to bind; anything but loopback needs a token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    db: DbOpt = "castinspect.db",
    token: Annotated[Optional[str], typer.Option(metavar="TOKEN", envvar="CASTINSPECT_TOKEN", help="Bearer token required on the API (better set through CASTINSPECT_TOKEN: a command line is visible to other users).")] = None,
    threshold: ThresholdOpt = None,
    review_band: ReviewOpt = None,
    on_unfamiliar: UnfamiliarOpt = "review",
    backend: BackendOpt = Backend.auto,
    max_upload_mb: Annotated[float, typer.Option(help="Largest accepted request body, in MiB.")] = 20.0,
    store_images: Annotated[bool, typer.Option(help="Keep each inspected photo in the log for audit (stored once per content).")] = False,
    station: Annotated[Optional[str], typer.Option(metavar="NAME", help="This station's name, written with each record (several stations, one log).")] = None,
    drift_window: WindowOpt = 200,
    drift_baseline: BaselineOpt = 500,
    decode_slots: Annotated[Optional[int], typer.Option(metavar="N", help="Photos decoded and judged at once (default: one per core, at most 8); each holds up to about 7 bytes per pixel of the pixel limit.")] = None,
    queue_wait: Annotated[float, typer.Option(metavar="SECONDS", help="How long a request waits for a decode slot (64 may wait) before it is told 503 with Retry-After.")] = 2.0,
    commit_timeout: Annotated[float, typer.Option(metavar="SECONDS", help="How long a request waits for its record's commit (and a read for the log) before it is told 503.")] = 10.0,
    max_pixels: Annotated[Optional[int], typer.Option(metavar="N", help="Largest photo in pixels (width x height), refused unread above (default 50,000,000).")] = None,
    mqtt: MqttOpt = None,
    batch: Annotated[int, typer.Option(metavar="N", help="Up to N photos that arrive within --batch-wait of each other are judged in one model call (1: each alone).")] = 16,
    batch_wait: Annotated[float, typer.Option(metavar="MS", help="How long, in milliseconds, the first photo of a batch waits for others.")] = 2.0,
    model_name: Annotated[str, typer.Option(metavar="NAME", help="The model's name in the Open Inference Protocol (KServe v2) routes, /v2/models/NAME.")] = "castinspect",
    tokens: Annotated[Optional[Path], typer.Option(metavar="FILE", envvar="CASTINSPECT_TOKENS", help="Named tokens with roles (castinspect token add): operators inspect and settle parts, engineers also promote models.")] = None,
    anomaly: AnomalyOpt = None,
) -> None:
    """Serve the inspection API and the operator page; every judgement is committed to the log
    before its answer is sent. Without --model it judges with the registry's active model (the
    bundled one until a model is promoted) and switches when another is promoted.

    Example: castinspect serve --db sqlite:///line1.db   then open http://127.0.0.1:8000/
    """
    from castinspect.core.io import set_max_pixels
    from castinspect.station.access import Tokens
    from castinspect.station.app import Limits, check_binding
    from castinspect.station.app import serve as run_server
    from castinspect.station.drift import DriftSettings

    with user_errors(OSError):
        people = Tokens.of(token, tokens)
        check_binding(host, token, people)
        if max_pixels is not None:
            set_max_pixels(max_pixels)
        limits = Limits(max_upload=int(max_upload_mb * 1024 * 1024), decode_slots=decode_slots, queue_wait=queue_wait,
                        batch=batch, batch_wait=batch_wait / 1000)
        drift = DriftSettings(window=drift_window, baseline=drift_baseline, min_window=min(50, drift_window))
    log = open_log(db, station, commit_timeout)
    settings = dict(threshold=threshold, review_band=review_band, backend=backend.value, on_unfamiliar=on_unfamiliar,
                    anomaly=anomaly_model(anomaly))
    predictor = station_model(model, log, settings)
    say(f"castinspect serving model {predictor.model_id} on http://{host}:{port}/  "
        f"(log: {log.target.describe()}, schema v{log.schema_version()})")
    publisher = open_publisher(mqtt, log, station, predictor.model_id)
    try:
        run_server(predictor, log, host=host, port=port, token=token, store_images=store_images, drift=drift,
                   limits=limits, publisher=publisher, tokens=people, follow=settings if model is None else None,
                   model_name=model_name)
    finally:
        if publisher is not None:
            publisher.close()
        log.close()


def open_log(db: str, station: str | None, commit_timeout: float):
    from castinspect.station.log import InspectionLog

    # a database that cannot be reached: say which and why, no traceback
    with user_errors(OSError, Exception, prefix=f"cannot open the inspection log {db}: "):
        return InspectionLog.open(db, station=station, commit_timeout=commit_timeout)


def station_model(model: Path | None, log, settings: dict):
    """The Predictor a station starts with: ``--model``, else the registry's active model, else
    the bundled one."""
    from castinspect.inference.predict import Predictor
    from castinspect.station import registry

    with user_errors(OSError, LookupError):
        active = None if model is not None else registry.active(log)
        if active is not None:
            return registry.load(log, active, **settings)
        return Predictor.load(model, **settings)


def open_publisher(url: str | None, log, station: str | None, model_id: str):
    """The MQTT publisher for ``--mqtt``, or None."""
    if not url:
        return None
    from castinspect.station.mqtt import Publisher

    with user_errors(ValueError, ImportError):
        return Publisher(url, log, station or "station", model_id)


class WatchAction(str, Enum):
    move = "move"
    copy = "copy"
    sidecar = "sidecar"


@app.command()
def watch(
    folder: Annotated[Path, typer.Argument(help="The folder the camera writes its photos into.")],
    model: ModelOpt = None,
    db: DbOpt = "castinspect.db",
    out: Annotated[Optional[Path], typer.Option(metavar="DIR", help="Where ok/, defective/, review/ and failed/ go (default: inside FOLDER).")] = None,
    action: Annotated[WatchAction, typer.Option(help="move the photos into those folders, copy them, or leave them with a JSON sidecar.")] = WatchAction.move,
    settle: Annotated[float, typer.Option(metavar="SECONDS", help="A photo its writer did not announce closing (found at start-up, renamed in, on a network share) is taken once its size and time held still this long.")] = 0.5,
    poll: Annotated[Optional[float], typer.Option(metavar="SECONDS", help="Scan every so many seconds instead of listening for the writer (network shares, where no notifications arrive).")] = None,
    once: Annotated[bool, typer.Option(help="Judge the photos there now, then stop.")] = False,
    threshold: ThresholdOpt = None,
    review_band: ReviewOpt = None,
    on_unfamiliar: UnfamiliarOpt = "review",
    backend: BackendOpt = Backend.auto,
    station: Annotated[Optional[str], typer.Option(metavar="NAME", help="This station's name, written with each record.")] = None,
    commit_timeout: Annotated[float, typer.Option(metavar="SECONDS", help="How long to wait for a commit before leaving the photos for the next try.")] = 10.0,
    mqtt: MqttOpt = None,
    anomaly: AnomalyOpt = None,
) -> None:
    """Judge every photo a camera writes into FOLDER, exactly once (also those written while it
    was down, and across a crash), into the same log as serve; each photo then goes into ok/,
    defective/, review/ or failed/. Without --model, the registry's active model, followed as
    serve does. Stops cleanly on Ctrl-C or SIGTERM.

    Example: castinspect watch /srv/camera1 --db sqlite:///line1.db
    """
    import signal
    import threading

    from castinspect.cli.render import shown
    from castinspect.station.registry import Follower
    from castinspect.station.watch import Watcher, WatchSettings

    with user_errors(OSError):
        settings = WatchSettings(out=out, action=action.value, settle=settle, poll=poll)
    log = open_log(db, station, commit_timeout)
    args = dict(threshold=threshold, review_band=review_band, backend=backend.value, on_unfamiliar=on_unfamiliar,
                anomaly=anomaly_model(anomaly))
    predictor = station_model(model, log, args)

    def placed(name: str, where: str, about: dict) -> None:
        detail = about.get("error") or (f"p(defect) {about['p_defect']:.3f}" if about.get("p_defect") is not None
                                        else about.get("label", ""))
        reasons = ", ".join(about.get("reasons") or [])
        print(f"{where:<9} {shown(name)}  {detail}{'  ' + reasons if reasons else ''}", flush=True)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    publisher = open_publisher(mqtt, log, station, predictor.model_id)
    with log, user_errors(OSError):
        watcher = Watcher(predictor, log, folder, settings, on_placed=placed)
        say(f"castinspect watching {folder} with model {predictor.model_id} (log: {log.target.describe()})")

        def switch(new) -> None:
            watcher.predictor = new  # the next batch is judged with it
            say(f"now judging with model {new.model_id} (promoted)")
            if publisher is not None:
                publisher.model_changed(new.model_id)

        follower = None if model is not None or once else Follower(log, predictor.model_id, switch, say, **args)
        try:
            counts = watcher.run(stop, once=once)
        finally:
            if follower is not None:
                follower.close()
            if publisher is not None:
                publisher.close()
    say("judged: " + ", ".join(f"{n} {f}" for f, n in counts.items()))


log_app = typer.Typer(no_args_is_help=True, help="The inspection log written by castinspect serve.")
app.add_typer(log_app, name="log")


@log_app.command("export")
def log_export(
    db: DbOpt = "castinspect.db",
    fmt: Annotated[Optional[RecordFormat], typer.Option("--format", help="How the records are written (default csv).")] = None,
    as_csv: Annotated[Optional[bool], typer.Option("--csv/--jsonl", help="Older spellings of --format csv and --format jsonl.")] = None,
    file: Annotated[Optional[Path], typer.Option("--file", "--out", help="Write to this file (default: stdout; --out: the older spelling).")] = None,
    since: Annotated[Optional[str], typer.Option(metavar="TIME", help="Only inspections from this UTC time on (ISO 8601, e.g. 2026-12-01 or 2026-12-01T06:00).")] = None,
    until: Annotated[Optional[str], typer.Option(metavar="TIME", help="Only inspections before this UTC time.")] = None,
    station: Annotated[Optional[str], typer.Option(metavar="NAME", help="Only this station's inspections.")] = None,
    decision: Annotated[Optional[str], typer.Option(metavar="DECISION", help="Only ok, defective or review.")] = None,
) -> None:
    """Every inspection in the log (or those of a time span, a station, a decision), oldest first.

    Example: castinspect log export --db sqlite:///line1.db --format csv --file inspections.csv
    """
    from castinspect.station.database import COLUMNS
    from castinspect.station.log import InspectionLog

    chosen = fmt.value if fmt else ("jsonl" if as_csv is False else "csv")
    with user_errors():
        log = InspectionLog.open(db, create=False)
    if decision is not None and decision not in ("ok", "defective", "review"):
        raise typer.BadParameter("ok, defective or review", param_hint="--decision")
    where = {"since": since, "until": until, "station": station, "decision": decision}
    with log, (open(file, "w", newline="") if file else contextlib.nullcontext(sys.stdout)) as fh:
        if chosen == "table":
            n = sum(1 for _ in write_records(log.iter_rows(**where), "table", lambda row: row, list(COLUMNS)))
        else:
            n = log.export(fh, chosen, **where)
    say(f"{n} inspections exported")


@log_app.command("prune")
def log_prune(
    before: Annotated[str, typer.Option(metavar="TIME", help="Delete the inspections from before this UTC time (ISO 8601, e.g. 2025-12-01).")],
    db: DbOpt = "castinspect.db",
) -> None:
    """Delete old inspections (with their dispositions and the stored photos no kept inspection
    refers to), a batch at a time while stations keep recording. The stats keep every count; a
    part still awaiting a person stays. Export first what must be kept.

    Example: castinspect log prune --db sqlite:///line1.db --before 2025-12-01
    """
    from castinspect.station.log import InspectionLog
    from castinspect.station.retention import prune

    with user_errors():
        if not valid_time(before):
            raise ValueError(f"--before {before!r}: not an ISO 8601 time (e.g. 2025-12-01 or 2025-12-01T06:00)")
        log = InspectionLog.open(db, create=False)
    with log:
        done = prune(log, before)
    say(f"{done['inspections']} inspections and {done['images']} stored photos from before {before} deleted"
        + (f"; {done['awaiting']} still await a person and were kept" if done["awaiting"] else ""))


def valid_time(text: str) -> bool:
    from datetime import datetime

    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


@app.command()
def drift(
    db: DbOpt = "castinspect.db",
    report: Annotated[Optional[Path], typer.Option(metavar="FILE", help="Write the control charts as one HTML page.")] = None,
    since: Annotated[Optional[str], typer.Option(metavar="TIME", help="Only judgements from this UTC time on (ISO 8601, e.g. 2026-12-01 or 2026-12-01T06:00).")] = None,
    model_id: Annotated[Optional[str], typer.Option("--model-id", metavar="ID", help="Only this model's judgements (default: the model of the latest one).")] = None,
    drift_window: WindowOpt = 200,
    drift_baseline: BaselineOpt = 500,
) -> None:
    """Replay the inspection log through the drift monitor: where the line stood, judgement by
    judgement (ok / warning / alarm and why), from the log alone.

    Example: castinspect drift --db sqlite:///line1.db --since 2026-12-01 --report drift.html
    """
    from castinspect.station.drift import DriftSettings, replay
    from castinspect.station.drift_report import summarize, write_drift_report
    from castinspect.station.log import InspectionLog

    with user_errors():
        settings = DriftSettings(window=drift_window, baseline=drift_baseline, min_window=min(50, drift_window))
        log = InspectionLog.open(db, create=False)
    with log:
        rows = [r for r in log.iter_rows() if r["decision"] is not None and (since is None or r["time"] >= since)]
    chosen = model_id or (rows[-1]["model"] if rows else None)
    rows = [r for r in rows if r["model"] == chosen]
    history = replay(rows, settings, every=max(1, len(rows) // 2000))  # at most ~2,000 points charted
    summary = summarize(history)
    say(f"model {chosen}: {summary['judged']} judgements; state now: {summary['now'] or '-'}")
    for state in ("warning", "alarm"):
        first = summary[f"first_{state}"]
        say(f"first {state}: " + ("never" if first is None else
                                   f"judgement {first['index']} ({first['time']}): {'; '.join(first['reasons'])}"))
    if history:
        for reason in history[-1]["reasons"]:
            say(f"  now: {reason}")
    if report is not None:
        write_drift_report(report, history, settings, log.target.describe())
        say(f"report: {report}")
