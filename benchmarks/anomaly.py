"""The anomaly model fitted on good photos alone: image ROC-AUC on unseen parts, fitting time,
photos/s end to end.

    .venv/bin/python benchmarks/anomaly.py [--dataset casting|neu_det ...] [--json out.json]

casting: ``castinspect train casting_data --mode anomaly`` (fitted on the good photos of the
training split's parts outside validation: train/ok_front only; its defect photos never fitted),
ROC-AUC on the grouped validation split (parts never seen) and on the standard test split
(which is near-copies of training photos: the overlap is in the report). neu_det: the same with
one type (``--neu-good``, default crazing) standing for the good parts and the five others as
defects (``--neu-good`` again for more types, each its own run): reported, no target. Fitting time is the memory banks' (features and coreset; two fits where
the normalisation is chosen on validation) and the whole command's; photos/s is one ``castinspect predict --format json`` process over the test
photos, start-up included.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def run(cmd: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode()[-3000:])
    return time.perf_counter() - t, proc.stdout.decode()


def measure(name: str, root: Path, work: Path, good: str | None) -> dict:
    out = work / f"{name}-{good or 'ok'}-anomaly"
    config = work / f"{name}-{good or 'ok'}.yaml"
    config.write_text(f"data:\n  ok_class: {good}\n" if good else "{}\n")
    wall, _ = run([sys.executable, "-m", "castinspect", "train", str(root), "--mode", "anomaly", "--out", str(out),
                   "--config", str(config)])
    from castinspect.models.checkpoint import load_checkpoint

    metrics = json.loads((out / "metrics.json").read_text())
    ckpt = load_checkpoint(out / "model.ckpt")
    info = {**ckpt.info, "classes": ckpt.classes}
    test_photos = sorted(str(p) for p in (root / "test").glob("*/*") if p.is_file())
    listing = work / f"{name}-{good or 'ok'}-test.txt"
    listing.write_text("\n".join(test_photos) + "\n")
    seconds, stdout = run([sys.executable, "-m", "castinspect", "predict", "--files-from", str(listing),
                           "--format", "json", "--model", str(out / "model.ckpt")])
    assert len(json.loads(stdout)) == len(test_photos)
    fitted = info["anomaly"]
    row = {"dataset": name, "good_class": good or "ok_front", "classes": info["classes"],
           "fitted_photos": fitted["photos"], "bank": fitted["bank"], "grid": fitted["grid"],
           "places_scored": fitted["places_scored"], "top_k": fitted["top_k"], "normalize": ckpt.config.model.normalize,
           "normalize_validation_auc": fitted["normalize_auc"], "input_size": ckpt.config.model.input_size,
           "fit_seconds": fitted["fits_seconds"], "command_seconds": wall,
           "threshold_rule": info["threshold_rule"], "predict_photos_per_s": len(test_photos) / seconds,
           **{split: {k: metrics[split][k] for k in ("n", "roc_auc", "accuracy", "escapes", "false_rejects",
                                                    "defect_recall", "false_reject_rate")}
              for split in ("validation", "test")}}
    print(json.dumps(row, indent=2), flush=True)
    return row


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", action="append", choices=["casting", "neu_det"])
    ap.add_argument("--neu-good", action="append", help="the NEU-DET type standing for good parts (repeat; "
                    "default crazing)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.dataset or ["casting", "neu_det"]:
            root = DATA / ("casting_data" if name == "casting" else "neu_det")
            for good in (args.neu_good or ["crazing"]) if name == "neu_det" else [None]:
                rows.append(measure(name, root, Path(tmp), good))
    from castinspect.core.provenance import provenance

    out = {"anomaly": rows, "targets": {"casting_roc_auc": 0.99, "fit_seconds": 180}, "provenance": provenance()}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
