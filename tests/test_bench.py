"""castinspect bench on synthetic data: every figure present and positive, the ratios consistent.
(The speed targets are measured by the command and written in the README, not asserted here.)"""

from castinspect.lab.bench import run_bench
from castinspect.lab.reference import SeedCNN
from castinspect.models.checkpoint import load_checkpoint


def test_reference_is_the_seeds_architecture():
    model = SeedCNN()
    # 300 -> 298/149 -> 147/73 -> 71/35: 64*35*35 features into 224 units, as the seeds had
    assert sum(p.numel() for p in model.parameters()) == 17_585_345


def test_bench_reports_every_figure(model_path, synth_root):
    ckpt = load_checkpoint(model_path)
    r = run_bench(str(synth_root), ckpt, ["pytorch", "onnxruntime"], reference_steps=2, latency_n=5, int8=True)
    assert r["photos"] == 60 and r["decode_images_per_s"] > 0
    assert [b["backend"] for b in r["backends"]] == ["pytorch", "onnxruntime", "onnxruntime-int8"]
    # each backend's decisions against PyTorch fp32's: the same backend changes none
    assert r["backends"][0]["decisions"] == {"photos": 60, "changed": 0, "agreement": 1.0}
    assert all(0 <= b["decisions"]["changed"] <= 60 for b in r["backends"])
    for b in r["backends"] + [r["reference"]]:
        assert b["images_per_s"] > 0 and b["model_only_images_per_s"] > 0 and 0 < b["p50_ms"] <= b["p99_ms"]
    assert r["reference"]["steps"] == 2 and 0 <= r["reference"]["test_accuracy"] <= 1
    best = max(b["images_per_s"] for b in r["backends"])
    assert r["ratios"]["end_to_end_vs_decode_limit"] == best / r["decode_images_per_s"]
    assert r["ratios"]["parameters_vs_reference"] < 0.05
    # both models judged under the same variations (ours also at its own threshold)
    from castinspect.evaluation.robustness import SUITE
    names = [v.name for v in SUITE]
    for table in (r["robustness"], r["robustness_at_0.5"], r["reference"]["robustness"]):
        assert list(table) == names and all(t["n"] == 60 for t in table.values())
