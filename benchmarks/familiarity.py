"""Does the model know when it does not know? Issue 18's must-show numbers for one model.

    .venv/bin/python benchmarks/familiarity.py ../shared/data/casting_data --other ../shared/data/neu_det
    .venv/bin/python benchmarks/familiarity.py ../shared/data/neu_det --model runs/neu_det_familiarity/model.ckpt \
        --other ../shared/data/casting_data --name familiarity_neu_det

For the bundled model (or ``--model``), through the Predictor as ``predict`` runs it (default
backend, default ``--on-unfamiliar review``):

- in distribution: the share of the test photos flagged unfamiliar (and for any reason), and of
  the validation photos the familiarity was calibrated on (the model's own split, rebuilt);
- another product: the share of every photo under ``--other`` (train and test) flagged;
- capture shifts of the test photos (zoom 0.6 and 1.5, +1.5 EV, blur sigma 3 px, the background
  60 grey levels lighter or darker): errors, photos flagged, and silent errors (a wrong label on
  a photo neither flagged nor sent to review), each as a share of the photos.

Writes benchmarks/results/<name>.json. Nothing is chosen here: the model's calibration was fixed
on its validation photos when it was trained.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2

from castinspect.core.io import expand_paths
from castinspect.core.provenance import provenance
from castinspect.data.datasets import load_folder, read_manifest, split_dir
from castinspect.evaluation.evaluate import evaluate
from castinspect.evaluation.robustness import (
    Variation,
    affine,
    background,
    gain,
    run_suite,
)
from castinspect.inference.predict import Predictor
from castinspect.training.inputs import as_set, split_train_val


def blur_px(sigma: float):
    return lambda img, rng: cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)


SHIFTS = (
    Variation("zoom_0.6", "camera", "the part 40% smaller in the frame", affine(angle=0.0, scale=0.6)),
    Variation("zoom_1.5", "camera", "the part 50% larger in the frame", affine(angle=0.0, scale=1.5)),
    Variation("exposure_+1.5EV", "camera", "1.5 stops over-exposed (2.8x the light, clipped)", gain(2 ** 1.5)),
    Variation("blur_sigma3", "camera", "Gaussian defocus, sigma 3 px", blur_px(3.0)),
    Variation("background_lighter_60", "camera", "the background 60 grey levels lighter", background(60.0)),
    Variation("background_darker_60", "camera", "the background 60 grey levels darker", background(-60.0)),
)


def share(k: int, n: int) -> float | None:
    return round(k / n, 6) if n else None


def in_distribution(predictor: Predictor, data, split: str) -> dict:
    m = evaluate(predictor, data, split=split).metrics
    return {"n": m["n"], "unfamiliar": m["unfamiliar"], "unfamiliar_share": share(m["unfamiliar"] or 0, m["n"]),
            "flagged": m["flagged"], "flagged_share": share(m["flagged"], m["n"]), "reasons": m["reasons"],
            "errors": m["errors"], "silent_errors": m["silent_errors"],
            "accuracy_like_training": m["accuracy_like_training"],
            "accuracy_unlike_training": m["accuracy_unlike_training"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_root", help="the model's dataset: its test split is judged as it is and shifted")
    ap.add_argument("--model", help="a checkpoint (default: the bundled model)")
    ap.add_argument("--other", required=True, help="another product's dataset: every photo under it is judged")
    ap.add_argument("--name", default="familiarity")
    args = ap.parse_args()
    t0 = time.perf_counter()
    predictor = Predictor.load(args.model)
    ckpt = predictor.checkpoint
    result: dict = {"provenance": provenance(), "model": predictor.model_id,
                    "familiarity": ckpt.familiarity_summary(), "backend": predictor.backend.name}

    # The validation photos the familiarity was calibrated on, as the training run split them.
    run_split = Path(args.model).parent / "split.csv" if args.model else None
    if run_split is not None and run_split.is_file():
        val = read_manifest(run_split, "val", predictor.classes)
    else:  # the bundled model: its split rebuilt from its config and split seed
        val = as_set(split_train_val(ckpt.config, args.data_root)[1])
    result["validation"] = in_distribution(predictor, val, "val")
    test = load_folder(split_dir(args.data_root, "test"), predictor.classes)
    result["test"] = in_distribution(predictor, test, "test")

    other = expand_paths([args.other], recursive=True)
    judged = [i for i in predictor.predict(other) if i.judged]
    result["other_product"] = {
        "root": args.other, "n": len(judged),
        "unfamiliar": sum(i.familiar is False for i in judged),
        "unfamiliar_share": share(sum(i.familiar is False for i in judged), len(judged)),
        "flagged_share": share(sum(bool(i.reasons) or i.decision == "review" for i in judged), len(judged)),
        "decisions": {d: sum(i.decision == d for i in judged) for d in ("ok", "defective", "review")}}

    shifts, _ = run_suite(predictor, test, suite=SHIFTS)
    result["shifts"] = {name: {"description": r["description"], "n": r["n"], "errors": r["errors"],
                               "escapes": r["escapes"], "false_rejects": r["false_rejects"],
                               "flagged": r["unlike_training"], "flagged_share": share(r["unlike_training"], r["n"]),
                               "silent_errors": r["silent_errors"],
                               "silent_error_share": share(r["silent_errors"], r["n"]),
                               "silent_escapes": r["silent_escapes"]}
                        for name, r in shifts.items()}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    out = Path("benchmarks/results") / f"{args.name}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("validation", "test", "other_product")}, indent=1))
    for name, r in result["shifts"].items():
        print(f"{name:24s} errors {r['errors']:4d}  flagged {r['flagged_share']:.3f}  silent {r['silent_error_share']:.4f}"
              f"  (silent escapes {r['silent_escapes']})")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
