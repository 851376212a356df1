"""The docs' pictures of the evaluation report and the heatmaps, made from real runs.

    .venv/bin/python scripts/screenshots.py          # writes docs/report-*.png, docs/heatmaps.png

Runs ``castinspect evaluate`` on the casting test split with the bundled model and costs, opens
the report in Debian's headless Chromium and photographs its opening and its threshold section;
then ``castinspect explain`` on a confident OK sample and a defective one, side by side.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
DATA = ROOT.parent / "shared" / "data" / "casting_data" / "test"
SAMPLES = ROOT / "src" / "castinspect" / "assets" / "samples"


def castinspect(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "castinspect", *args], check=True, cwd=ROOT)


def main() -> None:
    from selenium.webdriver.common.by import By
    from services import chromium_driver

    tmp = Path(tempfile.mkdtemp(prefix="castinspect-shots-"))
    castinspect("evaluate", str(DATA), "--cost-escape", "500", "--cost-false-reject", "20",
                "--report", str(tmp / "test.html"))
    driver = chromium_driver()
    try:
        driver.set_window_size(1100, 1400)
        driver.get((tmp / "test.html").as_uri())
        driver.save_screenshot(str(ROOT / "docs" / "report-top.png"))
        section = driver.find_element(By.XPATH, "//h3[text()='The threshold as a decision']")
        driver.execute_script("arguments[0].scrollIntoView()", section)
        driver.save_screenshot(str(ROOT / "docs" / "report-threshold.png"))
    finally:
        driver.quit()
    ok, bad = sorted((SAMPLES / "ok_front").iterdir())[0], sorted((SAMPLES / "def_front").iterdir())[0]
    castinspect("explain", str(ok), str(bad), "--out", str(tmp / "explained"))
    pictures = [cv2.imread(str(tmp / "explained" / p.with_suffix(".png").name)) for p in (ok, bad)]
    gap = np.full((pictures[0].shape[0], 16, 3), 255, np.uint8)
    cv2.imwrite(str(ROOT / "docs" / "heatmaps.png"), np.hstack([pictures[0], gap, pictures[1]]))
    print("wrote docs/report-top.png, docs/report-threshold.png, docs/heatmaps.png")


if __name__ == "__main__":
    main()
