"""Commands of the loop at the line: tokens for the people, the model registry, the reviewed
photos back to training, and two models compared."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from castinspect.cli.app import ReviewOpt, app, out, say, user_errors
from castinspect.cli.station import DbOpt

token_app = typer.Typer(no_args_is_help=True, help="Named bearer tokens for a station, each with a role.")
model_app = typer.Typer(no_args_is_help=True, help="The model registry in the inspection log.")
dataset_app = typer.Typer(no_args_is_help=True, help="Datasets made from the inspection log.")
app.add_typer(token_app, name="token")
app.add_typer(model_app, name="model")
app.add_typer(dataset_app, name="dataset")
ByOpt = Annotated[Optional[str], typer.Option("--by", metavar="NAME", help="Who does this, for the record (default: the user's login name).")]


@token_app.command("add")
def token_add(
    name: Annotated[str, typer.Argument(help="The person (or screen) the token is for; their dispositions carry it.")],
    role: Annotated[str, typer.Option(metavar="operator|engineer", help="operator: inspect and settle parts; engineer: also promote models.")] = "operator",
    file: Annotated[Path, typer.Option(metavar="FILE", help="The tokens file serve --tokens reads (only hashes are stored).")] = Path("castinspect-tokens.txt"),
) -> None:
    """Make a token for NAME, append its hash to FILE and print the token (shown only now).

    Example: castinspect token add anna --role operator --file /etc/castinspect/tokens.txt
    """
    from castinspect.station.access import add_token

    with user_errors():
        token = add_token(file, name, role)
    out.print(token, highlight=False, markup=False)
    say(f"{name} ({role}) added to {file}; give them the token above: it is not stored anywhere")


@model_app.command("add")
def model_add(
    model: Annotated[Path, typer.Argument(help="A checkpoint, or a run directory (its model.ckpt).")],
    db: DbOpt = "castinspect.db",
    by: ByOpt = None,
) -> None:
    """Register a model in the log (kept whole, with its validation metrics and a fingerprint of
    its training data); promote it to have the stations use it.

    Example: castinspect model add runs/line1-v2 --db sqlite:///line1.db
    """
    from castinspect.station import registry
    from castinspect.station.log import InspectionLog

    with user_errors(OSError):
        with InspectionLog.open(db) as log:
            entry = registry.register(log, model, by or getpass.getuser())
    say(f"model {entry['id']} registered ({entry['data_fingerprint'] or 'training data unknown'}); "
        f"castinspect model promote {entry['id']} --db {db}")


@model_app.command("list")
def model_list(db: DbOpt = "castinspect.db") -> None:
    """The registered models, the active one marked, with their validation figures.

    Example: castinspect model list --db sqlite:///line1.db
    """
    from castinspect.station import registry
    from castinspect.station.log import InspectionLog

    with user_errors(OSError):
        with InspectionLog.open(db, create=False) as log:
            entries = registry.models(log)
    table = Table(title=f"models in {db}")
    for column in ("", "id", "registered", "by", "classes", "val accuracy", "escapes", "false rejects", "data"):
        table.add_column(column)
    for e in entries:
        m = e["metrics"] or {}
        table.add_row("active" if e["active"] else "", e["id"], e["created"][:19], e["registered_by"],
                      ", ".join(e["classes"]), *(f"{m[k]:.4f}" if isinstance(m.get(k), float) else str(m.get(k, "-"))
                                                for k in ("accuracy", "escapes", "false_rejects")),
                      e["data_fingerprint"] or "-")
    out.print(table)


@model_app.command("promote")
def model_promote(
    model_id: Annotated[str, typer.Argument(metavar="ID", help="A registered model's id (castinspect model list).")],
    db: DbOpt = "castinspect.db",
    by: ByOpt = None,
) -> None:
    """Make a registered model the active one: every serve and watch on this log that follows the
    registry (started without --model) switches to it within seconds, without a restart.

    Example: castinspect model promote 3f9c0a1b2d4e --db sqlite:///line1.db
    """
    from castinspect.station import registry
    from castinspect.station.log import InspectionLog

    with user_errors(OSError, LookupError):
        with InspectionLog.open(db, create=False) as log:
            registry.promote(log, model_id, by or getpass.getuser())
    say(f"model {model_id} is active")


@dataset_app.command("from-log")
def dataset_from_log(
    db: DbOpt = "castinspect.db",
    out_dir: Annotated[Path, typer.Option("--out", metavar="DIR", help="Where the photos go: DIR/<label>/ and DIR/manifest.csv.")] = Path("reviewed"),
    pool_with: Annotated[Optional[Path], typer.Option(metavar="RUN_DIR|MANIFEST", help="Also write DIR/pooled.csv: this run's (or manifest's) photos, its validation unchanged, plus the reviewed photos for training.")] = None,
) -> None:
    """Write the photos people settled under the labels they confirmed (the last disposition of
    each), to train on together with the original photos.

    Example: castinspect dataset from-log --db sqlite:///line1.db --out reviewed --pool-with runs/line1
    """
    from castinspect.station.from_log import reviewed_dataset
    from castinspect.station.log import InspectionLog

    with user_errors(OSError):
        with InspectionLog.open(db, create=False) as log:
            result = reviewed_dataset(log, out_dir, pool_with)
    say(f"{result['photos']} reviewed photos written to {out_dir} "
        f"({', '.join(f'{n} {label}' for label, n in result['labels'].items()) or 'none'})")
    if result["reviewed_without_photo"]:
        say(f"{result['reviewed_without_photo']} reviewed parts have no stored photo (serve --store-images keeps them)")
    if pool_with is not None:
        say(f"pooled: {result['pooled']}: {result['pooled_original']} from {pool_with}, "
            f"{result['pooled_added']} reviewed photos added to train"
            + (f", {result['left_out_as_copies_of_validation']} left out as copies of validation or test photos"
               if result["left_out_as_copies_of_validation"] else ""))
        say(f"next: castinspect train {result['pooled']} --out runs/NEW")


@app.command()
def compare(
    new: Annotated[Path, typer.Argument(help="The new model: a checkpoint or a run directory.")],
    old: Annotated[str, typer.Argument(help="The model it would replace: a checkpoint, a run directory, or 'bundled'.")],
    data: Annotated[Path, typer.Argument(help="The photos: a run directory (its grouped validation photos), a folder of class folders, or a manifest.")],
    split: Annotated[str, typer.Option(metavar="SPLIT", help="A manifest's rows of this split.")] = "val",
    review_band: ReviewOpt = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", metavar="FILE", help="Write the comparison, with every photo whose decision changed.")] = None,
) -> None:
    """Judge the same photos with two models and show what changes: escapes, false rejects,
    review share, and the photos on which they disagree.

    Example: castinspect compare runs/line1-v2 bundled runs/line1-v2
    """
    from castinspect.evaluation.compare import SHOWN, compare_models
    from castinspect.inference.predict import Predictor
    from castinspect.station.registry import model_file

    with user_errors(OSError):
        predictors = [Predictor.load(None if str(m) == "bundled" else model_file(m), review_band=review_band)
                      for m in (new, old)]
        result = compare_models(*predictors, data, split)
    table = Table(title=f"{result['data']} ({result['split']}): new {result['new']['model']} vs old {result['old']['model']}")
    for column in ("", "new", "old"):
        table.add_column(column, justify="right")
    for key in SHOWN:
        a, b = result["new"][key], result["old"][key]
        table.add_row(key.replace("_", " "), *(f"{v:.4f}" if isinstance(v, float) else str(v) for v in (a, b)))
    out.print(table)
    say(f"decisions differ on {result['differ']} photos: the new model right where the old was wrong on "
        f"{result['new_right_old_wrong']}, wrong where the old was right on {result['old_right_new_wrong']}")
    if json_path:
        from castinspect.evaluation.evaluate import write_metrics

        write_metrics(json_path, result)
        say(f"comparison: {json_path}")
