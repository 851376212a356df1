"""Give the bundled model what models trained now carry: the image-quality reference
(``data.quality``; 200 of its own training photos) and the familiarity model
(``inference.familiarity``; a bank from its training photos, calibrated on its validation
photos), fitted exactly as training fits them, on its own split rebuilt from the saved config
and split seed. Weights, threshold and model id are unchanged. ``--model`` does the same for
another checkpoint trained before them (in place).

    .venv/bin/python benchmarks/bundle_references.py ../shared/data/casting_data
    .venv/bin/python benchmarks/bundle_references.py ../shared/data/casting_data --model runs/casting_default/model.ckpt
"""

from __future__ import annotations

import argparse

from castinspect.data.quality import fit_reference
from castinspect.models.checkpoint import (
    bundled_model_path,
    load_checkpoint,
    save_checkpoint,
)
from castinspect.models.network import predict_outputs
from castinspect.training.inputs import split_train_val
from castinspect.training.train import model_familiarity


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_root")
    ap.add_argument("--model", help="a checkpoint (default: the bundled model)")
    args = ap.parse_args()
    path = args.model or bundled_model_path()
    ckpt = load_checkpoint(path)
    before = ckpt.model_id
    train, val, _ = split_train_val(ckpt.config, args.data_root)
    ckpt.info["quality_reference"] = fit_reference(train.paths, seed=ckpt.config.data.split_seed).to_dict()
    tc = ckpt.config.train
    net = ckpt.build_network()
    familiarity = model_familiarity(net, train, predict_outputs(net, val.images)[1], tc.familiarity_share,
                                    tc.familiarity_bank, tc.seed)
    ckpt.familiarity = familiarity.to_state()
    save_checkpoint(ckpt, path)
    after = load_checkpoint(path)
    assert after.model_id == before, "the model id changed"
    print(f"{path} ({before}): quality reference of {ckpt.info['quality_reference']['photos']} photos, "
          f"familiarity {after.familiarity_summary()}")


if __name__ == "__main__":
    main()
