"""From the line back to training: the photos people settled, under the labels they confirmed.

``reviewed_dataset`` writes ``OUT/<label>/<inspection id>.<ext>`` for every inspection with a
disposition whose photo the log kept (``serve --store-images``), and ``OUT/manifest.csv`` (path,
label, split ``train``, group: one group per photo content, so a photo inspected twice stays in
one group). With ``pool_with`` (a run directory or a split manifest) it also writes
``OUT/pooled.csv``: those rows (their validation unchanged, so an old and a new model are compared
on the same photos) plus the reviewed photos as training rows, less any that are copies of a
validation or test photo (they would make the validation lie).
"""

from __future__ import annotations

import os
from pathlib import Path

from castinspect.data.datasets import manifest_rows, write_manifest
from castinspect.station.review import reviewed

EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "bmp": ".bmp", "tiff": ".tif", "webp": ".webp"}


def pooled_rows(pool_with: str | os.PathLike) -> list[dict]:
    """A run directory's ``split.csv`` or a manifest's rows, their paths made absolute."""
    path = Path(pool_with)
    if path.is_dir():
        path = path / "split.csv"
    if not path.is_file() or path.suffix.lower() != ".csv":
        raise FileNotFoundError(f"{pool_with}: neither a run directory (with split.csv) nor a split manifest")
    return [{**r, "path": os.path.abspath(r["path"])} for r in manifest_rows(path)]


def reviewed_dataset(log, out: str | os.PathLike, pool_with: str | os.PathLike | None = None) -> dict:
    """Write the reviewed photos (see the module); what was written and what was left out."""
    out = Path(out)
    rows, no_photo = [], 0
    labels: dict[str, int] = {}
    for item in reviewed(log):
        stored = log.image(item["image_sha256"]) if item["image_sha256"] else None
        if stored is None:
            no_photo += 1
            continue
        data, fmt = stored
        folder = out / item["label"]
        folder.mkdir(parents=True, exist_ok=True)
        file = folder / f"{item['inspection_id']}{EXTENSIONS.get(fmt or '', '.img')}"
        file.write_bytes(data)
        rows.append({"path": str(file.relative_to(out)), "label": item["label"], "split": "train",
                     "group": "log-" + item["image_sha256"][:16]})
        labels[item["label"]] = labels.get(item["label"], 0) + 1
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out / "manifest.csv", rows)
    result = {"out": str(out), "photos": len(rows), "labels": dict(sorted(labels.items())),
              "reviewed_without_photo": no_photo}
    if pool_with is not None:
        result.update(_pool(out, rows, pooled_rows(pool_with)))
    return result


def _pool(out: Path, reviewed_rows: list[dict], original: list[dict]) -> dict:
    from castinspect.data.parts import copies_in

    held = [r["path"] for r in original if r["split"] in ("val", "test")]
    mine = [str((out / r["path"]).resolve()) for r in reviewed_rows]
    copied = copies_in(mine, held) if mine and held else [False] * len(mine)
    added = [{**r, "path": p} for r, p, c in zip(reviewed_rows, mine, copied) if not c]
    write_manifest(out / "pooled.csv", original + added)
    counts: dict[str, int] = {}
    for r in original:
        counts[r["split"]] = counts.get(r["split"], 0) + 1
    return {"pooled": str(out / "pooled.csv"), "pooled_original": counts, "pooled_added": len(added),
            "left_out_as_copies_of_validation": int(sum(bool(c) for c in copied))}
