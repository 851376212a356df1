"""The docs' picture of anomaly maps beside Grad-CAM's, on real defective photos.

    .venv/bin/python scripts/anomaly_maps.py RUN_DIR     # writes docs/anomaly-maps.png

RUN_DIR: an anomaly model of the casting data (``castinspect train ../shared/data/casting_data
--mode anomaly --out RUN_DIR``). For each credited defective sample: ``castinspect explain`` with
the bundled classifier (left) and with the anomaly model (right).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "src" / "castinspect" / "assets" / "samples" / "def_front"


def explained(photos: list[Path], out: Path, *model: str) -> list[np.ndarray]:
    subprocess.run([sys.executable, "-m", "castinspect", "explain", *map(str, photos), "--out", str(out), *model],
                   check=True, cwd=ROOT)
    return [cv2.imread(str(out / p.with_suffix(".png").name)) for p in photos]


def main() -> None:
    run_dir = Path(sys.argv[1])
    photos = sorted(SAMPLES.iterdir())[:3]
    tmp = Path(tempfile.mkdtemp(prefix="castinspect-maps-"))
    cams = explained(photos, tmp / "gradcam")
    maps = explained(photos, tmp / "anomaly", "--model", str(run_dir / "model.ckpt"))
    gap = np.full((cams[0].shape[0], 16, 3), 255, np.uint8)
    rows = [np.hstack([c, gap, m]) for c, m in zip(cams, maps)]
    cv2.imwrite(str(ROOT / "docs" / "anomaly-maps.png"), np.vstack(rows))
    print("wrote docs/anomaly-maps.png")


if __name__ == "__main__":
    main()
