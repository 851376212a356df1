"""ONNX export and the inference backends: every backend gives the checkpoint's answers."""

import importlib.util
import json

import numpy as np
import pytest
from conftest import REAL_DATA, real_data_available

from castinspect.data.datasets import decode_set, load_folder
from castinspect.inference.export import export_onnx, read_metadata
from castinspect.inference.predict import Predictor
from castinspect.models.checkpoint import (
    bundled_model_path,
    load_checkpoint,
    save_checkpoint,
)

BACKENDS = ["onnxruntime"] + (["openvino"] if importlib.util.find_spec("openvino") else [])


@pytest.fixture(scope="module")
def onnx_path(model_path, tmp_path_factory):
    return export_onnx(load_checkpoint(model_path), tmp_path_factory.mktemp("onnx") / "m.onnx")


def test_metadata_travels_with_the_graph(onnx_path, model_path):
    ckpt = load_checkpoint(model_path)
    meta = read_metadata(onnx_path)
    assert meta["classes"] == ckpt.classes and meta["threshold"] == ckpt.threshold
    assert meta["input_size"] == ckpt.config.model.input_size and meta["model_id"] == ckpt.model_id


@pytest.fixture(scope="module")
def mirrored(model_path, tmp_path_factory):
    """The test model with mirror averaging switched on: a checkpoint and its exported file."""
    ckpt = load_checkpoint(model_path)
    ckpt.config.model.mirror_average = True
    folder = tmp_path_factory.mktemp("mirrored")
    save_checkpoint(ckpt, folder / "m.ckpt")
    return folder / "m.ckpt", export_onnx(ckpt, folder / "m.onnx")


@pytest.mark.parametrize("mirror", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_agree_with_pytorch(onnx_path, model_path, mirrored, synth_root, backend, mirror):
    # From a checkpoint the ONNX backends run the one-view graph and average the views themselves;
    # from an exported file, the graph does it all. Both must give PyTorch's answers.
    if mirror:
        model_path, onnx_path = mirrored
    files = sorted(str(p) for p in synth_root.glob("test/*/*.jpeg"))
    reference = list(Predictor.load(model_path, backend="pytorch").predict(files))
    for predictor in (Predictor.load(onnx_path, backend=backend), Predictor.load(model_path, backend=backend)):
        got = list(predictor.predict(files))
        assert [g.label for g in got] == [r.label for r in reference]
        assert [g.decision for g in got] == [r.decision for r in reference]
        assert max(abs(g.score - r.score) for g, r in zip(got, reference)) <= 1e-5
        assert all(g.model == r.model for g, r in zip(got, reference))
        # familiarity counts validation photos (~60 here) at least as far: at most a step apart
        assert max(abs(g.familiarity - r.familiarity) for g, r in zip(got, reference)) <= 0.02
        assert [g.familiar for g in got] == [r.familiar for r in reference]


@pytest.mark.parametrize("backend", ["pytorch", *BACKENDS])
def test_backends_are_safe_to_call_from_many_threads(model_path, synth_root, backend):
    """The server judges requests on a thread pool with one predictor: each call must get its
    own photos' answers, however the calls interleave."""
    from concurrent.futures import ThreadPoolExecutor

    predictor = Predictor.load(model_path, backend=backend)
    images = decode_set(load_folder(synth_root / "test", predictor.classes), predictor.input_size).images
    expected = [predictor.probabilities(images[i:i + 1]) for i in range(len(images))]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(5):
            got = list(pool.map(lambda i: predictor.probabilities(images[i:i + 1]), range(len(images))))
            np.testing.assert_allclose(np.concatenate(got), np.concatenate(expected), atol=1e-6)


def test_onnx_model_cannot_run_on_pytorch(onnx_path):
    with pytest.raises(ValueError, match="checkpoint"):
        Predictor.load(onnx_path, backend="pytorch")


def test_not_a_castinspect_onnx(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(tmp_path / "other.onnx"))
    with pytest.raises(ValueError, match="not a castinspect ONNX model"):
        Predictor.load(tmp_path / "other.onnx")


def test_cli_predict_same_answers_from_onnx(onnx_path, model_path, synth_root, tmp_path):
    from test_cli import cli

    r = cli("export", str(model_path), "--onnx", str(tmp_path / "cli.onnx"))
    assert r.returncode == 0, r.stderr
    folder = str(synth_root / "test" / "def_front")
    a = json.loads(cli("predict", folder, "--model", str(model_path), "--backend", "pytorch", "--format", "json").stdout)
    b = json.loads(cli("predict", folder, "--model", str(tmp_path / "cli.onnx"), "--format", "json").stdout)
    assert [(x["path"], x["label"]) for x in a] == [(x["path"], x["label"]) for x in b]


needs_real = pytest.mark.skipif(not real_data_available(), reason="needs ../shared/data/casting_data")


@pytest.fixture(scope="module")
def real_test():
    ckpt = load_checkpoint(bundled_model_path())
    return ckpt, decode_set(load_folder(REAL_DATA / "test", ckpt.classes), ckpt.config.model.input_size)


@needs_real
def test_fp32_export_matches_pytorch_on_real_photos(real_test, tmp_path):
    ckpt, test = real_test
    images = test.images[::5]
    torch_p, torch_f = Predictor(ckpt, backend="pytorch").judge(images)
    path = export_onnx(ckpt, tmp_path / "m.onnx")
    onnx_p, onnx_f = Predictor.load(path, backend="onnxruntime").judge(images)
    assert np.abs(onnx_p - torch_p).max() <= 1e-5  # the export itself: ONNX Runtime runs it as written
    # familiarity: the share of ~1,000 validation photos at least as far, so a step is ~0.001
    assert np.abs(onnx_f - torch_f).max() <= 0.002
    in_process_p, in_process_f = Predictor(ckpt, backend="onnxruntime").judge(images)  # one-view graph, views here
    assert np.abs(in_process_p - torch_p).max() <= 1e-5 and np.abs(in_process_f - torch_f).max() <= 0.002
    if "openvino" in BACKENDS:  # OpenVINO's own fp32 kernels: ~1.5e-5 measured; the same decisions
        ov_p, ov_f = Predictor.load(path, backend="openvino").judge(images)
        assert np.abs(ov_p - torch_p).max() <= 1e-4 and np.abs(ov_f - torch_f).max() <= 0.002


@needs_real
def test_int8_changes_at_most_two_decisions_on_the_test_split(real_test, tmp_path):
    from castinspect.inference.export import calibration_set

    ckpt, test = real_test
    calib = calibration_set(REAL_DATA, ckpt.config.model.input_size, 256)  # training photos only
    path = export_onnx(ckpt, tmp_path / "int8.onnx", int8=True, calibration=calib)
    assert read_metadata(path)["int8"] is True
    fp32 = Predictor(ckpt, backend="pytorch", on_unfamiliar="judge")  # the model's decisions, compared
    int8 = Predictor.load(path, on_unfamiliar="judge")
    a = fp32.inspections(test.paths, *_judged(fp32, test.images))
    b = int8.inspections(test.paths, *_judged(int8, test.images))
    changed = [(x.source, x.p_defect, y.p_defect) for x, y in zip(a, b) if x.decision != y.decision]
    print("INT8 changed decisions:", changed)  # listed, each one, in the test log
    assert len(changed) <= 2, changed
    # the familiarity's distances stay in float; the embedding they measure is the INT8 network's
    moved = [(x.source, x.familiarity, y.familiarity) for x, y in zip(a, b) if x.familiar != y.familiar]
    print("INT8 changed familiarity:", moved)
    assert len(moved) <= 0.01 * len(a), moved


def _judged(predictor: Predictor, images: np.ndarray) -> tuple:
    """``inspections``' probabilities, reasons (none) and familiarity for decoded photos."""
    probs, familiarity = predictor.judge(images)
    return probs, None, familiarity


def test_int8_is_kept_only_within_its_guard(model_path, tmp_path):
    """Accuracy-controlled quantisation: on the run's validation photos the INT8 graph must make
    the checkpoint's decisions, all but a set count; asked for an impossible count it is refused
    and nothing is left behind."""
    from test_cli import cli

    out = cli("export", str(model_path), "--int8", "--onnx", str(tmp_path / "q.onnx"))
    assert out.returncode == 0, out.stderr
    said = " ".join(out.stdout.split())  # the console wraps long lines
    assert "validation decisions changed (at most 2)" in said and (tmp_path / "q.onnx").is_file()
    refused = cli("export", str(model_path), "--int8", "--onnx", str(tmp_path / "no.onnx"), "--max-changed", "-1")
    assert refused.returncode == 2 and "not kept" in refused.stderr and not (tmp_path / "no.onnx").exists()
