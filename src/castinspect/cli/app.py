"""The ``castinspect`` Typer app, the options several commands share, and how errors end a command.

Each command parses, calls one library function, prints. Parsed arguments never leave the CLI;
results go to stdout, progress and warnings to stderr. Exit codes: 0 all judged, 1 some photos
not judged, 2 a usage error (a bad option, a missing folder or model).
"""

from __future__ import annotations

from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Iterator, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape

from castinspect.core import __version__
from castinspect.models.registry import CLASSIFIERS, SIZES

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Visual inspection of metal castings: train, evaluate, predict, serve.")
out = Console()
err = Console(stderr=True, soft_wrap=True)  # no hard wraps: messages stay greppable


class Backend(str, Enum):
    auto = "auto"
    pytorch = "pytorch"
    onnxruntime = "onnxruntime"
    openvino = "openvino"
    openvino_bf16 = "openvino-bf16"


class RecordFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    jsonl = "jsonl"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Split(str, Enum):
    train = "train"
    val = "val"
    test = "test"


BackboneChoice = Enum("BackboneChoice", {name: name for name in CLASSIFIERS}, type=str)
SizeChoice = Enum("SizeChoice", {name: name for name in SIZES}, type=str)

AnomalyOpt = Annotated[Optional[Path], typer.Option("--anomaly-model", metavar="MODEL", help="An anomaly model (train --mode anomaly) every part must pass too: a part it rejects is defective whatever the classifier says.")]
ModelOpt = Annotated[Optional[Path], typer.Option("--model", "-m", help="Checkpoint or exported .onnx (default: the bundled model).")]
CheckpointArg = Annotated[Optional[Path], typer.Argument(help="Checkpoint (default: the bundled model).")]
BackendOpt = Annotated[Backend, typer.Option(help="auto is ONNX Runtime where installed; openvino-bf16 is faster on CPUs with AMX, its probabilities a little further off.")]
ThresholdOpt = Annotated[Optional[float], typer.Option(help="Override the model's decision threshold.")]
ReviewOpt = Annotated[Optional[tuple[float, float]], typer.Option(
    help="Send parts with LO <= p(defect) < HI to a person: decision 'review'.")]
UnfamiliarOpt = Annotated[str, typer.Option(
    "--on-unfamiliar", metavar="review|reject|judge",
    help="A photo unlike the training photos (unfamiliar to the model, blurred, over- or under-exposed, small, distorted): "
         "send it to review, reject it, or judge it as any other.")]
CostEscapeOpt = Annotated[Optional[float], typer.Option(metavar="COST", help="What one defect passed as OK costs (any unit, e.g. euros): with --cost-false-reject, the expected cost per 1,000 parts at each threshold.")]
CostFalseRejectOpt = Annotated[Optional[float], typer.Option(metavar="COST", help="What one good part scrapped costs.")]
CostReviewOpt = Annotated[float, typer.Option(metavar="COST", help="What one part sent to a person costs (with a review band).")]
RecursiveOpt = Annotated[bool, typer.Option("--recursive", "-r", help="Also the images in every sub-folder of a folder given.")]
# What a library call raises for a user's mistake (a missing folder, a bad model file, a bad
# value): one line on stderr and exit 2, never a traceback.
USER_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, ValueError, ImportError, RuntimeError)


def duration(text: str) -> float:
    """Seconds from "10m", "90s", "1h30m" or a plain number of seconds (a Typer parser)."""
    import re

    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text)
    else:
        parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?", text)
        if not text or parts is None:
            raise typer.BadParameter(f"{text!r} is not a duration: write e.g. 10m, 90s or 1h30m")
        h, m, s = (float(x or 0) for x in parts.groups())
        seconds = 3600 * h + 60 * m + s
    if seconds <= 0:
        raise typer.BadParameter("a duration must be more than zero")
    return seconds


def _version(value: bool) -> None:
    if value:
        print(f"castinspect {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="Print the version and exit.")] = False) -> None:
    """Visual inspection of metal castings: train, evaluate, predict, serve."""


def fail(message: str) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(2)


@contextmanager
def user_errors(*extra: type[BaseException], prefix: str = "") -> Iterator[None]:
    """Turn the library's errors for a user's mistake into ``fail``."""
    try:
        yield
    except (*USER_ERRORS, *extra) as exc:
        fail(f"{prefix}{exc}")


def say(text: str) -> None:
    """A line on stderr, printed as is (no markup, no highlighting)."""
    err.print(text, highlight=False, markup=False)


def value(option: Enum | None) -> str | None:
    return option.value if option is not None else None


def anomaly_model(path: Path | None):
    """The Predictor of ``--anomaly-model``, or None."""
    if path is None:
        return None
    from castinspect.inference.predict import Predictor

    with user_errors(OSError):
        return Predictor.load(path)
