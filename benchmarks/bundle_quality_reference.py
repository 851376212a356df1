"""Give the bundled model the image-quality reference (``data.quality``) that models trained now
carry: fitted, as training fits it, on 200 of its own training photos (its validation split
rebuilt from the saved config and split seed, and left out). Weights, threshold and model id
are unchanged.

    .venv/bin/python benchmarks/bundle_quality_reference.py ../shared/data/casting_data
"""

from __future__ import annotations

import argparse

from castinspect.data.quality import fit_reference
from castinspect.models.checkpoint import (
    bundled_model_path,
    load_checkpoint,
    save_checkpoint,
)
from castinspect.training.inputs import split_train_val


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_root")
    args = ap.parse_args()
    ckpt = load_checkpoint(bundled_model_path())
    before = ckpt.model_id
    train, _, _ = split_train_val(ckpt.config, args.data_root)
    ckpt.info["quality_reference"] = fit_reference(train.paths, seed=ckpt.config.data.split_seed).to_dict()
    save_checkpoint(ckpt, bundled_model_path())
    after = load_checkpoint(bundled_model_path())
    assert after.model_id == before, "the model id changed"
    print(f"bundled model {before}: quality reference of {ckpt.info['quality_reference']['photos']} photos")


if __name__ == "__main__":
    main()
