"""How well does the near-duplicate score separate copies from different parts? A control.

For every test photo: its best aligned score against training photos of the SAME class (where
its copies are, if any) and against photos of the OTHER class (a defective part and an OK part
are different parts, so a match there is a false flag — or a label conflict in the data).

    .venv/bin/python benchmarks/audit_control.py ../shared/data/casting_data
"""

import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from castinspect import audit as A


def main(root: str) -> None:
    imgs = A.scan(root)
    with ThreadPoolExecutor(4) as pool:
        polars = np.stack(list(pool.map(A._load, imgs)))
    split = np.array([m.split for m in imgs])
    label = np.array([m.label for m in imgs])
    train, test = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
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
