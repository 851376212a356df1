import json
import subprocess
import sys

from typer.testing import CliRunner

from castinspect import __version__
from castinspect.cli import app

runner = CliRunner()


def cli(*args: str) -> subprocess.CompletedProcess:
    """The real console entry point in a child process: stdout and stderr kept apart."""
    return subprocess.run([sys.executable, "-m", "castinspect.cli", *args], capture_output=True, text=True)


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and __version__ in r.stdout


def test_every_command_is_documented_with_an_example():
    for command in app.registered_commands:
        doc = command.callback.__doc__ or ""
        assert "Example: castinspect" in doc, command.callback.__name__


def test_predict_json_contract(model_path, synth_root, tmp_path):
    folder = synth_root / "test" / "ok_front"
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    r = cli("predict", str(folder), str(bad), "--model", str(model_path), "--format", "json")
    assert r.returncode == 1, r.stderr
    items = json.loads(r.stdout)  # stdout holds only the JSON array
    names = sorted(p.name for p in folder.iterdir())
    assert [i["path"] for i in items] == [str(folder / n) for n in names] + [str(bad)]
    assert all(set(i) >= {"path", "label", "score", "error"} for i in items)
    assert items[-1]["error"] and items[-1]["label"] is None and items[-1]["score"] is None
    assert "bad.jpg" in r.stderr
    ok = cli("predict", str(folder / names[0]), "--model", str(model_path), "--format", "json")
    assert ok.returncode == 0 and json.loads(ok.stdout)[0]["error"] is None


def test_predict_csv_table_threshold_and_annotate(model_path, synth_root, tmp_path):
    f = str(next((synth_root / "test" / "def_front").iterdir()))
    r = runner.invoke(app, ["predict", f, "--model", str(model_path), "--format", "csv", "--threshold", "0"])
    assert r.exit_code == 0
    header, row = r.stdout.strip().splitlines()[:2]
    assert header.startswith("path,label,score,decision") and ",defective," in row
    r = runner.invoke(app, ["predict", f, "--model", str(model_path), "--annotate", str(tmp_path / "ann")])
    assert r.exit_code == 0 and len(list((tmp_path / "ann").glob("*.png"))) == 1


def test_evaluate_writes_json_and_report(model_path, synth_root, tmp_path):
    r = runner.invoke(app, ["evaluate", str(synth_root / "test"), "--model", str(model_path),
                            "--json", str(tmp_path / "m.json"), "--report", str(tmp_path / "r.html")])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "m.json").read_text())["evaluation"]
    assert m["n"] == 60 and set(m) >= {"accuracy", "per_class", "confusion_matrix", "roc_auc", "pr_auc",
                                       "brier", "ece", "escapes", "false_rejects"}
    assert (tmp_path / "r.html").read_text().startswith("<!doctype html>")


def test_train_command_end_to_end(synth_root, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {size: tiny, input_size: 48, backbone: castnet}\ntrain: {batch_size: 64, min_steps: 0}\n")
    r = cli("train", str(synth_root), "--out", str(tmp_path / "run"), "--config", str(cfg),
            "--epochs", "1", "--seed", "3", "--no-search")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "run" / "model.ckpt").is_file() and "run directory" in r.stdout
    info = cli("info", str(tmp_path / "run" / "model.ckpt"))
    data = json.loads(info.stdout)
    assert data["classes"] == ["def_front", "ok_front"] and data["input_size"] == 48
    assert data["backbone"] == "castnet" and data["size"] == "tiny"
    assert data["mirror_average"] is False  # the compact CNN's default, recorded in its config
    assert "mirror_average: false" in (tmp_path / "run" / "config.yaml").read_text()
    assert "metrics" in data and data["parameters"] > 0


def test_clear_errors_for_bad_arguments(tmp_path):
    r = cli("evaluate", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "nowhere" in r.stderr
    (tmp_path / "m.ckpt").write_text("x")
    r = cli("predict", "x.jpg", "--model", str(tmp_path / "m.ckpt"))
    assert r.returncode == 2 and "not a castinspect checkpoint" in r.stderr


def test_evaluate_leak_free_subset_sets_copies_aside(model_path, synth_root, tmp_path):
    import shutil

    test_dir = tmp_path / "test"
    shutil.copytree(synth_root / "test", test_dir)
    planted = next((synth_root / "train" / "ok_front").iterdir())
    shutil.copy(planted, test_dir / "ok_front" / "planted_copy.jpeg")
    r = runner.invoke(app, ["evaluate", str(test_dir), "--model", str(model_path), "--train-root",
                            str(synth_root), "--json", str(tmp_path / "m.json")])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["evaluation"]["n"] == 61
    assert m["leak_free"]["removed_as_copies"] == 1 and m["leak_free"]["n"] == 60
    # photos that are all training photos: the overlap says so, and no empty subset is judged
    r = runner.invoke(app, ["evaluate", str(synth_root / "train"), "--model", str(model_path), "--train-root",
                            str(synth_root), "--json", str(tmp_path / "all.json")])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "all.json").read_text())
    assert m["overlap"]["count"] == m["evaluation"]["n"] == 300 and "leak_free" not in m


def test_review_band_in_predict_and_evaluate(model_path, synth_root, tmp_path):
    f = str(next((synth_root / "test" / "ok_front").iterdir()))
    r = runner.invoke(app, ["predict", f, "--model", str(model_path), "--review-band", "0", "1", "--format", "json"])
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["decision"] == "review"
    r = runner.invoke(app, ["evaluate", str(synth_root / "test"), "--model", str(model_path),
                            "--review-band", "0.3", "0.7", "--json", str(tmp_path / "m.json")])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "m.json").read_text())["evaluation"]
    assert m["review_band"] == [0.3, 0.7] and 0 <= m["review_share"] <= 1 and len(m["reliability"]) == 10


def test_predict_summary_line_jsonl_and_recursive(model_path, synth_root, tmp_path):
    r = cli("predict", str(synth_root / "test"), "--model", str(model_path), "--format", "jsonl")
    assert r.returncode == 2 and "no images found in" in r.stderr and "did you mean --recursive?" in r.stderr
    (tmp_path / "empty").mkdir()
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    r = cli("predict", str(synth_root / "test"), str(bad), "--recursive", "--model", str(model_path),
            "--format", "jsonl")
    assert r.returncode == 1
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(records) == 61 and records[-1]["error"] and records[-1]["error_code"] == "not_image"
    ok, defective, review = (sum(x["decision"] == d for x in records) for d in ("ok", "defective", "review"))
    summary = r.stderr.strip().splitlines()[-1]
    assert summary.startswith(f"60 judged, {ok} ok, {defective} defective, {review} review, 1 failed, ")
    assert "photos/s" in summary


def test_fixed_choices_are_listed_in_help_and_checked():
    r = runner.invoke(app, ["predict", "--help"], env={"COLUMNS": "200"})
    assert "table|csv|json|jsonl" in r.stdout and "auto|pytorch|onnxruntime|openvino|openvino-bf16" in r.stdout
    r = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert "tiny|small|base" in r.stdout and "castnet|efficientnet_lite0" in r.stdout
    r = cli("predict", "x.jpg", "--format", "xml")
    assert r.returncode == 2 and "xml" in r.stderr


def test_control_characters_in_names_are_printed_escaped(model_path, tmp_path):
    odd = tmp_path / "bad\x1b[2Jname.jpg"
    odd.write_bytes(b"not an image")
    r = cli("predict", str(odd), "--model", str(model_path))
    assert r.returncode == 1 and "\x1b" not in r.stderr and "\\x1b" in r.stderr
