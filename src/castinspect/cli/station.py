"""Commands of the inspection station: serve, and the log it writes (log export)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from castinspect.cli.app import (
    Backend,
    BackendOpt,
    ModelOpt,
    RecordFormat,
    ReviewOpt,
    ThresholdOpt,
    UnfamiliarOpt,
    app,
    say,
    user_errors,
)
from castinspect.cli.render import write_records

DbOpt = Annotated[str, typer.Option(metavar="URL", help="Inspection log: a file path, sqlite:///FILE or postgresql://user@host:port/name.")]


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
) -> None:
    """Serve the inspection API and the operator page; every judgement is committed to the log
    before its answer is sent.

    Example: castinspect serve --db sqlite:///line1.db   then open http://127.0.0.1:8000/
    """
    from castinspect.inference.predict import Predictor
    from castinspect.station.app import check_binding
    from castinspect.station.app import serve as run_server
    from castinspect.station.log import InspectionLog

    with user_errors(OSError):
        check_binding(host, token)
        predictor = Predictor.load(model, threshold=threshold, review_band=review_band, backend=backend.value,
                                   on_unfamiliar=on_unfamiliar)
    # a database that cannot be reached: say which and why, no traceback
    with user_errors(OSError, Exception, prefix=f"cannot open the inspection log {db}: "):
        log = InspectionLog.open(db, station=station)
    say(f"castinspect serving model {predictor.model_id} on http://{host}:{port}/  "
        f"(log: {log.target.describe()}, schema v{log.schema_version()})")
    try:
        run_server(predictor, log, host=host, port=port, token=token,
                   max_upload=int(max_upload_mb * 1024 * 1024), store_images=store_images)
    finally:
        log.close()


log_app = typer.Typer(no_args_is_help=True, help="The inspection log written by castinspect serve.")
app.add_typer(log_app, name="log")


@log_app.command("export")
def log_export(
    db: DbOpt = "castinspect.db",
    fmt: Annotated[Optional[RecordFormat], typer.Option("--format", help="How the records are written (default csv).")] = None,
    as_csv: Annotated[Optional[bool], typer.Option("--csv/--jsonl", help="Older spellings of --format csv and --format jsonl.")] = None,
    file: Annotated[Optional[Path], typer.Option("--file", "--out", help="Write to this file (default: stdout; --out: the older spelling).")] = None,
) -> None:
    """Every inspection in the log, oldest first.

    Example: castinspect log export --db sqlite:///line1.db --format csv --file inspections.csv
    """
    from castinspect.station.database import COLUMNS
    from castinspect.station.log import InspectionLog

    chosen = fmt.value if fmt else ("jsonl" if as_csv is False else "csv")
    with user_errors():
        log = InspectionLog.open(db, create=False)
    with log, (open(file, "w", newline="") if file else contextlib.nullcontext(sys.stdout)) as fh:
        if chosen == "table":
            n = sum(1 for _ in write_records(log.iter_rows(), "table", lambda row: row, list(COLUMNS)))
        else:
            n = log.export(fh, chosen)
    say(f"{n} inspections exported")
