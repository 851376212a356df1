"""How light the background is, per class: the median grey level of each photo's outer 8-pixel
border, over every tenth training photo of each class. A class photographed on a lighter or
darker background than another lets a model read the class from the background.

    .venv/bin/python benchmarks/background_levels.py ../shared/data/casting_data

Writes benchmarks/results/background_levels.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from castinspect.core.io import ImageError, read_image
from castinspect.core.parallel import decode_all
from castinspect.core.provenance import provenance
from castinspect.data.datasets import load_split

BORDER = 8


def border_median(path: str) -> float:
    g = read_image(path)
    return float(np.median(np.r_[g[:BORDER].ravel(), g[-BORDER:].ravel(), g[:, :BORDER].ravel(), g[:, -BORDER:].ravel()]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    args = ap.parse_args()
    train = load_split(args.data, "train")
    out = {}
    for index, name in enumerate(train.classes):
        paths = [p for p, y in zip(train.paths, train.labels) if y == index][::10]
        levels = np.array([v for v in decode_all(border_median, paths) if not isinstance(v, ImageError)])
        out[name] = {"photos": len(levels), "mean": float(levels.mean()), "sd": float(levels.std()),
                     "p10": float(np.percentile(levels, 10)), "p90": float(np.percentile(levels, 90))}
        print(f"{name:12s} {len(levels):4d} photos: border median mean {levels.mean():.1f} (sd {levels.std():.1f}), "
              f"p10 {out[name]['p10']:.0f}, p90 {out[name]['p90']:.0f}")
    path = Path("benchmarks/results/background_levels.json")
    path.write_text(json.dumps({"provenance": provenance(), "data": args.data, "classes": out}, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
