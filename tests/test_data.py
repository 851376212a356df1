import numpy as np
import pytest

from castinspect.core.io import ImageError
from castinspect.data.datasets import decode_set, load_folder, split_dir
from castinspect.data.split import stratified_split


def test_load_folder_kaggle_layout(synth_root):
    images = load_folder(split_dir(synth_root, "train"))
    assert images.classes == ["def_front", "ok_front"]
    assert images.counts() == {"def_front": 150, "ok_front": 150}
    assert split_dir(synth_root / "train", "train") == synth_root / "train"  # class folders directly
    with pytest.raises(FileNotFoundError):
        split_dir(synth_root / "train", "test")


def test_load_folder_refuses_unknown_classes(synth_root):
    with pytest.raises(ValueError, match="not among"):
        load_folder(synth_root / "test", classes=["def_front", "good"])


def test_stratified_split_is_disjoint_balanced_and_seeded():
    labels = np.array([0] * 80 + [1] * 20)
    keep, held = stratified_split(labels, 0.25, seed=3)
    assert len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == 100
    assert (labels[held] == 0).sum() == 20 and (labels[held] == 1).sum() == 5
    keep2, held2 = stratified_split(labels, 0.25, seed=3)
    assert np.array_equal(held, held2)
    assert not np.array_equal(held, stratified_split(labels, 0.25, seed=4)[1])


def test_decode_set_skips_bad_files_or_fails_when_strict(synth_root, tmp_path):
    import shutil
    root = tmp_path / "d"
    shutil.copytree(synth_root / "test", root)
    (root / "ok_front" / "zz_broken.jpeg").write_bytes(b"not an image")
    images = load_folder(root)
    decoded = decode_set(images, 32)
    assert len(decoded.errors) == 1 and "zz_broken.jpeg" in str(decoded.errors[0])
    assert decoded.images.shape == (len(images) - 1, 32, 32)
    assert len(decoded.paths) == len(decoded.labels) == len(images) - 1
    with pytest.raises(ImageError, match="zz_broken"):
        decode_set(images, 32, strict=True)


def test_group_split_keeps_groups_whole_and_classes_balanced():
    from castinspect.data.split import stratified_group_split

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(60), rng.integers(1, 8, 60))
    labels = (groups % 3 == 0).astype(int)  # a group's photos share a label
    keep, held = stratified_group_split(labels, groups, 0.2, seed=1)
    assert len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == len(labels)
    assert not set(groups[keep]) & set(groups[held])  # no part on both sides
    for c in (0, 1):
        share = (labels[held] == c).sum() / (labels == c).sum()
        assert 0.1 <= share <= 0.35
