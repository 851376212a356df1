"""How often the image-quality checks (``data.quality``) name a reason, on photos like the
training ones and on photos that are not: a reference fitted on (200 of) the casting training
photos, checked on the casting test photos as taken, on the same photos changed as a moved or
failing camera would deliver them, and on every NEU-DET photo (another product); and a
reference fitted on NEU-DET's training photos, checked on its test photos (in distribution).

    .venv/bin/python benchmarks/quality_checks.py ../shared/data/casting_data ../shared/data/neu_det

Writes benchmarks/results/quality_checks.json. Nothing is chosen here: the margins are fixed
in ``data.quality`` and this reports what they do.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from castinspect.core.io import ImageError, read_image
from castinspect.core.parallel import decode_all
from castinspect.core.provenance import provenance
from castinspect.data.datasets import load_split
from castinspect.data.quality import fit_reference, photo_stats

SHIFTS = {
    "as taken": lambda g: g,
    "blur sigma 3": lambda g: cv2.GaussianBlur(g, (0, 0), 3.0),
    "exposure +1.5 EV": lambda g: np.clip(g.astype(np.float32) * 2 ** 1.5, 0, 255).astype(np.uint8),
    "exposure -1.5 EV": lambda g: (g.astype(np.float32) * 2 ** -1.5).astype(np.uint8),
    "thumbnail 64x64": lambda g: cv2.resize(g, (64, 64), interpolation=cv2.INTER_AREA),
    "4:3 frame": lambda g: cv2.resize(g, (g.shape[1] * 4 // 3, g.shape[0]), interpolation=cv2.INTER_LINEAR),
    "half resolution": lambda g: cv2.resize(g, (g.shape[1] // 2, g.shape[0] // 2), interpolation=cv2.INTER_AREA),
}


def flagged(ref, photos: list[np.ndarray]) -> dict:
    reasons = [ref.reasons(photo_stats(p)) for p in photos]
    return {"photos": len(photos), "flagged": sum(bool(r) for r in reasons),
            "share": sum(bool(r) for r in reasons) / max(1, len(photos)),
            "reasons": dict(Counter(x for r in reasons for x in r))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("casting")
    ap.add_argument("other")
    args = ap.parse_args()
    ref = fit_reference(load_split(args.casting, "train").paths)
    test = [p for p in decode_all(read_image, load_split(args.casting, "test").paths) if not isinstance(p, ImageError)]
    results = {name: flagged(ref, [shift(p) for p in test]) for name, shift in SHIFTS.items()}
    other = [p for p in decode_all(read_image, load_split(args.other, "train").paths + load_split(args.other, "test").paths)
             if not isinstance(p, ImageError)]
    results["another product (every NEU-DET photo)"] = flagged(ref, other)
    own = fit_reference(load_split(args.other, "train").paths)
    other_test = [p for p in decode_all(read_image, load_split(args.other, "test").paths) if not isinstance(p, ImageError)]
    results["NEU-DET test, its own reference"] = flagged(own, other_test)
    for name, r in results.items():
        print(f"{name:40s} {r['flagged']:5d} / {r['photos']:5d} flagged ({100 * r['share']:.1f}%)  {r['reasons']}")
    out = Path("benchmarks/results/quality_checks.json")
    out.write_text(json.dumps({"provenance": provenance(), "reference": ref.to_dict(), "checks": results}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
