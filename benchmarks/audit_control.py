"""Checks of the audit on the casting data, printed as numbers.

1. Centre precision: photos moved, turned and zoomed at random; how far the symmetry centre found
   in the copy lies from the original's centre mapped through the same transform.
2. The data README's measure: 64 px correlation over the 8 quarter-turns and mirrors; how many
   test photos reach >= 0.995 against train, and how many of those the audit flags.
3. A control: for every test photo, its best aligned score against training photos of the SAME class (where
its copies are, if any) and against photos of the OTHER class (a defective part and an OK part
are different parts, so a match there is a false flag — or a label conflict in the data).

    .venv/bin/python benchmarks/audit_control.py ../shared/data/casting_data
"""

import sys
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from castinspect import audit as A
from castinspect.core.io import preprocess, read_image


def centre_errors(paths: list[str], rng: np.random.Generator, n: int = 150) -> np.ndarray:
    size = A.AUDIT_SIZE
    errors = []
    for i in rng.choice(len(paths), n, replace=False):
        img = preprocess(read_image(paths[i]), size)
        m = cv2.getRotationMatrix2D((size / 2, size / 2), rng.uniform(0, 360), rng.uniform(0.9, 1.1))
        m[:, 2] += rng.uniform(-0.06, 0.06, 2) * size
        moved = cv2.warpAffine(img, m, (size, size), borderMode=cv2.BORDER_REFLECT)
        found = [A.symmetry_centre(cv2.GaussianBlur(x.astype(np.float32), (0, 0), 1.0)) for x in (img, moved)]
        expected = m @ np.array([*found[0], 1.0])
        errors.append(float(np.hypot(*(expected - np.array(found[1])))))
    return np.array(errors)


def readme_measure(paths: list[str], split: np.ndarray) -> np.ndarray:
    """Best 64 px normalised correlation of each test photo with any train photo, over the 8
    quarter-turns and mirrors (the data README's lower-bound measure)."""
    def small(p: str) -> np.ndarray:
        g = preprocess(read_image(p), 64).astype(np.float32)
        g -= g.mean()
        return g / np.linalg.norm(g)

    with ThreadPoolExecutor(4) as pool:
        s = np.stack(list(pool.map(small, paths)))
    train = s[split == "train"].reshape(int((split == "train").sum()), -1)
    test = s[split == "test"]
    best = np.full(len(test), -1.0)
    for k in range(8):
        q = np.rot90(test[:, :, ::-1] if k >= 4 else test, k % 4, axes=(1, 2)).reshape(len(test), -1)
        best = np.maximum(best, (q @ train.T).max(axis=1))
    return best


def main(root: str) -> None:
    imgs = A.scan(root)
    with ThreadPoolExecutor(4) as pool:
        polars = np.stack(list(pool.map(A._load, imgs)))
    split = np.array([m.split for m in imgs])
    label = np.array([m.label for m in imgs])
    train, test = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    errs = centre_errors([m.path for m in imgs], np.random.default_rng(0))
    print("centre error (px at 128 px) percentiles 50/90/99:", np.percentile(errs, [50, 90, 99]).round(2))
    readme = readme_measure([m.path for m in imgs], split)
    flagged = set()  # test photos in a cross-split duplicate pair
    for pair in A.duplicate_pairs(imgs, list(polars)):
        if imgs[pair.a].split != imgs[pair.b].split:
            flagged |= {imgs[i].path for i in (pair.a, pair.b) if imgs[i].split == "test"}
    high = {imgs[i].path for i, v in zip(test, readme) if v >= 0.995}
    print(f"64 px measure: {len(high)} test photos >= 0.995; {len(high & flagged)} of them flagged by the audit")
    best = {"same": np.zeros(len(test)), "other": np.zeros(len(test))}
    for k, i in enumerate(test):
        for key, refs in (("same", train[label[train] == label[i]]), ("other", train[label[train] != label[i]])):
            _, _, scores = next(A.verified_neighbours(polars[i:i + 1], polars[refs]))
            best[key][k] = scores.max()
    for key in best:
        print(f"best {key}-class score percentiles 5/25/50/75/95/99:",
              np.percentile(best[key], [5, 25, 50, 75, 95, 99]).round(3))
    for th in (0.90, 0.93, 0.95, 0.97):
        print(f"threshold {th:.2f}: {int((best['same'] >= th).sum())} test photos with a same-class match, "
              f"{int((best['other'] >= th).sum())} with an other-class match")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/casting_data")
