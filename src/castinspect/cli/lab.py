"""Commands that measure: bench, learning-curve."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from castinspect.cli.app import BackboneChoice, Backend, app, out, say, user_errors
from castinspect.cli.render import print_bench, print_curve


@app.command()
def bench(
    data_root: Annotated[Path, typer.Argument(help="Dataset root with train/ and test/ class folders.")],
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help="Checkpoint (default: the bundled model).")] = None,
    backends: Annotated[Optional[list[Backend]], typer.Option("--backend", help="Backends to measure (repeat; default: every installed one).")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write every number here.")] = None,
    reference: Annotated[bool, typer.Option(help="Also train and measure the seeds' CNN (about 15 minutes on 2 cores).")] = True,
    reference_epochs: Annotated[int, typer.Option(help="The reference's epoch limit (early stopping on validation loss).")] = 12,
    reference_steps: Annotated[Optional[int], typer.Option(help="Cut the reference's training after this many steps (a quick look).")] = None,
    latency_n: Annotated[int, typer.Option(help="Photos judged one at a time for the latency percentiles.")] = 200,
    robustness: Annotated[bool, typer.Option(help="Also judge both models under the line-variation suite.")] = True,
    int8: Annotated[bool, typer.Option(help="Also measure the INT8 export (calibrated on training photos) on ONNX Runtime.")] = False,
) -> None:
    """Measure decode-only throughput, end-to-end throughput and latency per backend, training
    throughput, and the same for a reproduction of the seeds' CNN, in one run; print the ratios.

    Example: castinspect bench ../shared/data/casting_data --json bench.json
    """
    from castinspect.core.provenance import provenance
    from castinspect.evaluation.evaluate import write_metrics
    from castinspect.inference.backends import installed_backends
    from castinspect.lab.bench import run_bench
    from castinspect.models.checkpoint import load_checkpoint

    names = [b.value for b in backends] if backends else installed_backends()
    with user_errors():
        result = run_bench(str(data_root), load_checkpoint(model), names, reference=reference,
                           reference_epochs=reference_epochs, reference_steps=reference_steps,
                           latency_n=latency_n, robustness=robustness, report=say, int8=int8)
    print_bench(result, robustness)
    if json_path:
        write_metrics(json_path, {"provenance": provenance(), **result})


@app.command("learning-curve")
def learning_curve(
    data_root: Annotated[Path, typer.Argument(help="Dataset root (any splits are pooled) or a folder of class folders.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the runs, curve.json, curve.csv and curve.png.")] = Path("runs/learning-curve"),
    sizes: Annotated[Optional[list[int]], typer.Option("--size", help="Training photos per point (repeat; 0 = all).")] = None,
    backbones: Annotated[Optional[list[BackboneChoice]], typer.Option("--backbone", help="Backbones to measure (repeat; default: both).")] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per point at small sizes.")] = 3,
    small: Annotated[int, typer.Option(help="Sizes up to this many photos get several seeds.")] = 200,
    config: Annotated[Optional[Path], typer.Option(help="YAML config: the recipe to measure.")] = None,
    pretrained_seeds: Annotated[Optional[int], typer.Option(help="Seeds per small size for efficientnet_lite0 (default: --seeds).")] = None,
    pretrained_max: Annotated[int, typer.Option(help="Largest subset for efficientnet_lite0 (0: all).")] = 0,
) -> None:
    """Train the default recipe on growing subsets of the training photos (50 to all) and judge
    each on one fixed set of unseen parts: accuracy, escapes and false rejects per size, with a plot.
    Runs already in --out are read back, so an interrupted curve goes on where it stopped.

    Example: castinspect learning-curve ../shared/data/casting_data --out runs/curve --backbone castnet --backbone efficientnet_lite0
    """
    from castinspect.core.config import Config
    from castinspect.lab.learning_curve import DEFAULT_SIZES
    from castinspect.lab.learning_curve import learning_curve as run_curve
    from castinspect.models.registry import CLASSIFIERS

    chosen = tuple(b.value for b in backbones) if backbones else CLASSIFIERS
    with user_errors():
        curve = run_curve(data_root, out_dir, tuple(sizes or DEFAULT_SIZES), chosen, seeds=seeds, small=small,
                          base=Config.load(config) if config else None, report=say,
                          pretrained_seeds=pretrained_seeds, pretrained_max=pretrained_max)
    print_curve(curve)
    out.print(f"curve: {out_dir / 'curve.png'}", highlight=False, markup=False)
