"""MkDocs hooks: the results pages, generated from the JSON files the benchmarks wrote.

Every file in ``benchmarks/results/`` (and the bundled model's own ``model_metrics.json``; a
training run's ``metrics.json`` is copied there as its command wrote it) becomes
``results/<name>.md``, a page of tables with the command that measured it, and is published
beside it as ``results/<name>.json``: a number in the docs always has its command and its raw
file. Nothing here measures anything; a result not re-measured has no page.
"""

from __future__ import annotations

import json
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BUNDLED = ROOT / "src" / "castinspect" / "assets" / "model_metrics.json"
# The bundled model's metrics.json predates provenance in run files; its command is the README's.
BUNDLED_COMMAND = ("castinspect train ../shared/data/casting_data --epochs 10 --target-recall 0.99 with the recipe "
                   "of then (today: --config benchmarks/bundled_recipe.yaml --no-search) "
                   "(run by benchmarks/bundle_model.py --seeds 0 1; the lower validation loss was bundled)")
TITLES = {"bundled-model": "The bundled model's training run", "bench": "Speed",
          "locate-castnet": "Part localisation on and off (compact CNN)",
          "neu-det-default": "NEU-DET (six defect types) with the default train",
          "casting-default": "The casting data with the default train (recipe search, 10-minute budget)",
          "casting-no-search": "The casting data with the fixed recipe of before camera augmentation (--no-search)",
          "casting-no-search-camera": "The casting data with the fixed recipe (--no-search), camera augmentation included",
          "neu-det-default-before-camera": "NEU-DET with the default train before the camera augmentation "
                                           "(written as neu_det_default.json then)",
          "neu-no-search-camera": "NEU-DET, fixed recipe with exposure augmentation on (--no-search)",
          "neu-no-search-no-exposure": "NEU-DET, fixed recipe with exposure augmentation off (--no-search)",
          "background-levels": "How light the background is, per class (casting training photos)",
          "quality-checks": "Image-quality checks on photos like and unlike the training photos",
          "casting-camera-224": "The casting data with the fixed recipe at 224 px (--no-search)",
          "camera-augmentation": "Camera augmentation in training (tilt, exposure, background): the fixed recipe "
                                 "on validation under all 24 conditions",
          "learning-curve": "How many labelled photos: the learning curve with the fixed recipe",
          "bundled-validation-at-half": "The bundled model on the grouped validation split at 0.5",
          "moved-framing": "A moved camera in training: the fixed recipe with zoom 0.7-1.3 and 15% shift",
          "casting-moved-no-search": "The casting data, fixed recipe with moved-camera framing (--no-search)",
          "bundled-test-split": "The bundled model on the test split",
          "familiarity": "Knowing when it does not know: the bundled model",
          "familiarity-casting-default": "Knowing when it does not know: the casting data's default train",
          "familiarity-neu-det": "Knowing when it does not know: NEU-DET's default train",
          "familiarity-methods": "Familiarity: nearest neighbour against Mahalanobis (the bundled model)",
          "familiarity-methods-neu-det": "Familiarity: nearest neighbour against Mahalanobis (NEU-DET)",
          "neu-det-familiarity": "NEU-DET with the default train, familiarity measured",
          "drift-stream": "Drift alarms on a simulated line",
          "stats-scale": "The station's stats on a big log",
          "watch-backlog": "The folder watcher on a backlog",
          "predict-vs-decode": "End-to-end predict against the decode-only limit",
          "micro-batching": "The station with and without micro-batching",
          "distilled-student": "A first distilled student of the bundled model (25-minute budget)",
          "distilled-student-full": "The distilled student on its whole schedule (the teacher on ONNX Runtime)",
          "distilled-student-suite": "The distilled student beside its teacher under the line variations",
          "distilled-student-alpha0": "The student on the labels alone (the same schedule, alpha 0)",
          "distilled-student-t1": "The distilled student at temperature 1",
          "distilled-student-e30": "The distilled student on the compact CNN's own schedule (temperature 1)",
          "anomaly-pooling": "How the anomaly model pools its patches into a score (validation)",
          "anomaly-input-size": "The anomaly model at larger inputs (validation)",
          "teacher-backends": "The distillation teacher's cost per batch on each backend",
          "distributed-training": "One process against torchrun with two (gloo, the same steps)",
          "anomaly": "Anomaly detection fitted on good parts alone"}
HEADLINE = [("photos", "n", "{}"), ("accuracy", "accuracy", "{:.4f}"), ("errors", "errors", "{}"),
            ("escapes (defects passed)", "escapes", "{}"), ("false rejects (OK scrapped)", "false_rejects", "{}"),
            ("defect recall", "defect_recall", "{:.4f}"), ("false-reject rate", "false_reject_rate", "{:.4f}"),
            ("ROC-AUC", "roc_auc", "{:.5f}"), ("PR-AUC", "pr_auc", "{:.5f}"), ("Brier", "brier", "{:.5f}"),
            ("ECE", "ece", "{:.5f}")]


def on_files(files, config):
    sources = sorted(RESULTS.glob("*.json")) if RESULTS.is_dir() else []
    if BUNDLED.is_file():
        sources.append(BUNDLED)
    for path in sources:
        name = "bundled-model" if path == BUNDLED else path.stem.replace("_", "-")
        data = json.loads(path.read_text())
        files.append(File.generated(config, f"results/{name}.md", content=render(name, path, data)))
        files.append(File.generated(config, f"results/{name}.json", content=path.read_text()))
    return files


def render(name: str, path: Path, data: dict) -> str:
    prov = data.get("provenance") or {"command": BUNDLED_COMMAND}
    title = TITLES.get(name, name.replace("-", " ").capitalize())
    head = [f"# {title}", "", f"Measured by `{prov.get('command', '?')}`", ""]
    facts = [(k, prov[k]) for k in ("date", "castinspect", "cpu", "cores") if k in prov]
    if facts:
        head += ["; ".join(f"{k}: {v}" for k, v in facts), ""]
    head += [f"Raw file: [`{path.relative_to(ROOT)}`]({name}.json)", ""]
    if "backends" in data:
        body = bench(data)
    elif "other_product" in data:
        body = familiarity(data)
    elif "methods" in data:
        body = familiarity_methods(data)
    elif "streams" in data:
        body = drift_streams(data)
    elif "sizes" in data:
        body = stats_scale(data)
    elif "watch_seconds" in data:
        body = table(["photos", "predict", "watch (judged, committed, moved)", "watch / predict", "target"],
                     [[data["photos"], f"{data['predict_photos_per_s']:.0f} photos/s ({data['predict_seconds']} s)",
                       f"{data['watch_photos_per_s']:.0f} photos/s ({data['watch_seconds']} s; {data['recorded']} "
                       f"records, {data['left_in_folder']} left)", f"{data['ratio']:.2f}", f"≥ {data['target_ratio']}"]])
    elif "decode_only_photos_per_s" in data:
        body = predict_vs_decode(data)
    elif "batching" in data:
        body = micro_batching(data)
    elif "launcher" in data:
        body = distributed(data)
    elif "anomaly" in data:
        body = anomaly(data)
    elif "pooling" in data:
        body = anomaly_pooling(data)
    elif "evaluation" in data:
        body = evaluation(data)
    elif "validation" in data:
        body = training(data)
    elif "runs" in data:
        body = comparison(data, name)
    elif "points" in data:
        body = curve(data)
    elif "checks" in data:
        body = table(["photos", "checked", "named a reason", "share", "reasons"],
                     [[k, r["photos"], r["flagged"], f"{100 * r['share']:.1f}%",
                       ", ".join(f"{x} {n}" for x, n in r["reasons"].items()) or "–"]
                      for k, r in data["checks"].items()])
    else:
        body = ["```json", json.dumps(data, indent=1)[:4000], "```"]
    return "\n".join(head + body) + "\n"


def table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out + [""]


def fmt(v, pattern: str) -> str:
    return "n/a" if v is None else pattern.format(v)


def metrics_table(sections: dict[str, dict]) -> list[str]:
    rows = [[label, *(fmt(m.get(key), p) for m in sections.values())] for label, key, p in HEADLINE
            if any(key in m for m in sections.values())]
    return table(["", *sections], rows)


def evaluation(data: dict) -> list[str]:
    out = [f"Model `{data['model']}` at threshold {data['threshold']:.4f} on `{data['data']}`.", ""]
    sections = {"all photos": data["evaluation"]}
    if "leak_free" in data:
        sections["leak-free subset"] = data["leak_free"]
        out += [f"The leak-free subset sets aside the {data['leak_free']['removed_as_copies']} photos that are "
                "copies or near-copies of training photos (`--train-root`).", ""]
    out += metrics_table(sections)
    if "robustness" in data:
        out += ["## Line variations", ""]
        out += table(["variation", "kind", "what", "accuracy", "escapes", "false rejects"],
                     [[k, r["kind"], r["description"], f"{r['accuracy']:.4f}", r["escapes"], r["false_rejects"]]
                      for k, r in data["robustness"].items()])
        summary = data.get("robustness_summary", {})
        if summary.get("lowest_accuracy_camera") is not None:
            out += [f"Under the moved-camera conditions (kind `camera`): lowest accuracy "
                    f"{summary['lowest_accuracy_camera']:.4f}, {summary['camera_escapes']} escapes in all.", ""]
        escaped = summary.get("photometric_escaped_photos", {})
        for photo, names in escaped.items():
            out.append(f"- passed under {', '.join(names)}: `{Path(photo).name}`")
        out.append("")
    return out


def pct(v, digits: int = 1) -> str:
    return "n/a" if v is None else f"{100 * v:.{digits}f}%"


def familiarity(data: dict) -> list[str]:
    f = data.get("familiarity") or {}
    out = [f"Model `{data['model']}` on {data['backend']}; familiarity `{f.get('method')}`, bank of {f.get('bank')} "
           f"from {f.get('photos')} training photos, calibrated on {f.get('validation_photos')} validation photos "
           f"({pct(f.get('share'))} left outside).", ""]
    sets = [("validation (calibration)", data["validation"]), ("test (in distribution)", data["test"]),
            (f"another product (`{data['other_product']['root']}`)", data["other_product"])]
    out += table(["photos", "n", "unfamiliar", "share", "flagged (any reason or review)"],
                 [[k, r["n"], r["unfamiliar"], pct(r["unfamiliar_share"], 2), pct(r["flagged_share"], 2)]
                  for k, r in sets])
    out += ["Capture shifts of the test photos: a *silent error* is a wrong label on a photo that was "
            "neither flagged nor sent to review (shares of all the photos).", ""]
    out += table(["shift", "what", "errors (escapes / false rejects)", "flagged", "silent errors", "share",
                  "silent escapes"],
                 [[k, r["description"], f"{r['errors']} ({r['escapes']} / {r['false_rejects']})",
                   pct(r["flagged_share"]), r["silent_errors"], pct(r["silent_error_share"], 2), r["silent_escapes"]]
                  for k, r in data["shifts"].items()])
    return out


def familiarity_methods(data: dict) -> list[str]:
    out = [f"Model `{data['model']}`: bank or Gaussians from {data['fit_photos']} training photos, the cut at "
           f"the 99.5th percentile of {data['validation_photos']} validation photos.", ""]
    shifts = list(next(iter(data["methods"].values()))["shifts"])
    out += table(["method", "test flagged", "other product flagged", "AUROC test / other",
                  *[f"{s}: flagged / silent" for s in shifts]],
                 [[m, pct(r["test_flagged"], 2), pct(r["other_flagged"], 2), f"{r['auroc_test_vs_other']:.4f}",
                   *[f"{pct(r['shifts'][s]['flagged'], 0)} / {pct(r['shifts'][s]['silent_errors'], 2)}" for s in shifts]]
                  for m, r in data["methods"].items()])
    return out


def drift_streams(data: dict) -> list[str]:
    st = data["settings"]
    out = [f"Bundled model `{data['model']}`; window {st['window']}, baseline {st['baseline']}. Each stream: "
           f"clean photos then shifted ones, one request at a time through the server.", ""]
    out += table(["shifted photos", "clean: alarm / warning-or-alarm share", "shifted photos to the first alarm",
                  "first alarm's reasons"],
                 [[k, f"{pct(r['clean_alarm_share'], 2)} / {pct(r['clean_warning_share'], 2)}",
                   r["shifted_to_first_alarm"] if r["shifted_to_first_alarm"] is not None else "never",
                   "; ".join(r["alarm_reasons"] or [])] for k, r in data["streams"].items()])
    long = data["long_clean_stream"]
    out += [f"A long clean stream of {long['photos']} photos (the monitor alone over the Predictor's judgements): "
            f"alarm after {pct(long['alarm_share'], 2)} of them ({long['alarms']}), warning or alarm after "
            f"{pct(long['warning_or_alarm_share'], 2)}; first alarm at photo {long['first_alarm'] or 'never'}.", ""]
    return out


def stats_scale(data: dict) -> list[str]:
    out = [f"{data['database']} log; synthetic inspections over 30 days, half in the last 24 hours. Median (worst) "
           f"of 50 calls; target for the stats: at most {data['target_ms']} ms.", ""]
    return out + table(["rows", "of them in the last 24 h", "stats (what /v1/stats returns)", "page (15 rows + total)",
                        "counting the rows, as before"],
                       [[f"{r['rows']:,}", f"{r['last_24h']:,}", f"{r['stats']['median_ms']:.2f} ms ({r['stats']['max_ms']:.2f})",
                         f"{r['page']['median_ms']:.2f} ms ({r['page']['max_ms']:.2f})",
                         f"{r['row_count_scan']['median_ms']:.0f} ms"] for r in data["sizes"]])


def predict_vs_decode(data: dict) -> list[str]:
    d = data["definitions"]
    out = [f"{data['paths']:,} paths ({data['photos']:,} casting photos listed {data['paths'] // data['photos']} "
           f"times). Decode-only: {d['decode_only']}: **{data['decode_only_photos_per_s']:,.0f} photos/s**. "
           f"End to end: {d['end_to_end']}.", ""]
    return out + table(["model", "end-to-end photos/s", "share of decode-only", "seconds"],
                       [[f"`{m['model']}` ({m['model_file']})", f"{m['photos_per_s']:,.0f}", f"{m['vs_decode_only']:.1%}",
                         f"{m['seconds']:.0f}"] for m in data["models"]])


def micro_batching(data: dict) -> list[str]:
    rows = []
    for name, r in data["batching"].items():
        many = next(v for k, v in r.items() if k.endswith("_clients"))
        one = r["single_client"]
        rows.append([name, f"{many['requests_per_s']:.0f}", f"{many['p50_ms']:.1f} / {many['p99_ms']:.1f}",
                     f"{one['requests_per_s']:.0f}", f"{one['p50_ms']:.1f} / {one['p99_ms']:.1f}", r["errors"],
                     f"{r['log_check']['acknowledged']} = {r['log_check']['rows']}"])
    return table(["server", "16 clients: requests/s", "p50 / p99 ms", "one client: requests/s", "p50 / p99 ms",
                  "errors", "answers = log rows"], rows)


def distributed(data: dict) -> list[str]:
    n = data["processes"]
    out = [f"{data['per_class']} training photos per class, the default recipe for {data['epochs']} epochs, no search; "
           f"{data['launcher']}, {data['cores']} cores. Both runs validate on the same photos.", ""]
    rows = []
    for d in data["datasets"]:
        one, many = d["runs"]
        acc = [f"{r['val_accuracy']['value']:.1%} [{r['val_accuracy']['low']:.1%}, {r['val_accuracy']['high']:.1%}]"
               for r in (one, many)]
        rows.append([d["dataset"], d["validation_photos"], f"{one['steps']} / {many['steps']}", *acc,
                     f"{one['val_loss']:.3f} / {many['val_loss']:.3f}", f"{d['decisions_agree']} of {d['validation_photos']}",
                     f"{d['wall_seconds']['1']:.0f} / {d['wall_seconds'][str(n)]:.0f}", f"{d['speed_ratio']:.2f}"])
    return out + table(["data", "validation photos", "steps (1 / N)", "accuracy, 1 process (95%)",
                        f"accuracy, {n} processes (95%)", "best val loss (1 / N)", "decisions agree",
                        "wall s (1 / N)", "speed-up"], rows)


def anomaly(data: dict) -> list[str]:
    t = data["targets"]
    out = [f"Targets (casting): image ROC-AUC ≥ {t['casting_roc_auc']} on the photos of unseen parts, fitting ≤ "
           f"{t['fit_seconds']} s. Fitting = the memory banks' features and coreset (both normalisations where one is chosen on "
           "validation); the command includes decoding, "
           "the evaluation and the report.", ""]
    def normalisation(r: dict) -> str:
        tried = r.get("normalize_validation_auc") or {}
        return r.get("normalize", "imagenet") + (" (" + ", ".join(f"{k} {v:.3f}" for k, v in tried.items() if v is not None)
                                                  + ")" if len(tried) > 1 else "")

    rows = [[r["dataset"], r["good_class"], r["fitted_photos"], f"{r['bank']:,}",
             f"{r.get('input_size', 160)} px, {r.get('places_scored', 'all')} of {r['grid'][0] * r['grid'][1]}",
             normalisation(r),
             f"{r['validation']['roc_auc']:.3f} ({r['validation']['n']})", f"{r['test']['roc_auc']:.3f} ({r['test']['n']})",
             f"{r['validation']['defect_recall']:.1%} / {r['validation']['false_reject_rate']:.1%}",
             f"{r['fit_seconds']:.0f} / {r['command_seconds']:.0f}", f"{r['predict_photos_per_s']:.0f}"]
            for r in data["anomaly"]]
    return out + table(["data", "good class", "good photos fitted", "bank", "input, places scored",
                        "normalisation kept (validation ROC-AUC of each)", "ROC-AUC, unseen parts (photos)",
                        "ROC-AUC, test split (photos)", "validation recall / false rejects at the threshold",
                        "fit / command s", "predict photos/s"], rows)


def anomaly_pooling(data: dict) -> list[str]:
    ways = list(data["pooling"][0]["validation_roc_auc"])
    rows = [[r["dataset"], r["good"] or "ok_front", r["normalize"], r.get("input_size", 224), r["places"],
             r.get("fit_seconds", "—"), r.get("validation_photos_per_s", "—"),
             *(f"{r['validation_roc_auc'][w]:.3f}" for w in ways)] for r in data["pooling"]]
    return ["Validation ROC-AUC of each way to pool a photo's patch departures into its score: `max` the worst "
            "patch; `shareS` the mean of the worst share S of the places scored; `topK` of the worst K; "
            "`smoothS` the worst of the grid smoothed at σ S patches.", ""] + \
        table(["data", "good class", "normalisation", "input px", "places scored", "fit s", "validation photos/s",
               *ways], rows)


def bench(data: dict) -> list[str]:
    out = [f"{data['photos']} test photos at {data['input_size']} px, model `{data['model']}`. "
           f"Decode-only limit in this run: **{data['decode_images_per_s']:.0f} photos/s**.", ""]
    out += table(["backend", "end-to-end photos/s", "share of the decode limit", "model-only photos/s",
                  "one photo p50 / p99 ms"],
                 [[b["backend"], f"{b['images_per_s']:.0f}", f"{b['images_per_s'] / data['decode_images_per_s']:.1%}",
                   f"{b['model_only_images_per_s']:.0f}", f"{b['p50_ms']:.2f} / {b['p99_ms']:.2f}"]
                  for b in data["backends"]])
    out += [f"Training throughput: {data['train_images_per_s']:.0f} photos/s through a full training step.", ""]
    out += ["Ratios (the result; absolute times on a shared machine move between runs):", ""]
    out += table(["ratio", "value"], [[k, f"{v:.3f}" if isinstance(v, float) else v] for k, v in data["ratios"].items()])
    return out


def training(data: dict) -> list[str]:
    sections = {k: data[k] for k in ("validation", "test") if k in data}
    rule = "no OK class (defect types)" if data["threshold"] is None else f"threshold {data['threshold']:.4f}"
    out = [f"Model `{data['model']}`, {rule}; {data.get('parameters') or 0:,} parameters, "
           f"{(data.get('flops') or 0) / 1e6:.1f} M multiply-accumulates per photo; "
           f"{data.get('epochs_run')} epochs in {(data.get('train_seconds') or 0):.0f} s.", ""]
    if "wall_seconds" in data:
        out += [f"`{data['train_command']}`: **{data['wall_seconds']:.0f} s** from a cold start "
                f"(the whole command), {data['steps']} training steps in the final fit.", ""]
    out += metrics_table(sections)
    if data.get("search"):
        out += ["## Recipe search", "", "Each trial judged on the grouped validation split "
                "(objective: error rate plus a tenth of the loss; lower is better).", ""]
        out += table(["trial", "state", "seconds", "steps", "val accuracy", "objective", "chosen", "recipe"],
                     [[t["trial"], t["state"], t["seconds"], t["steps"] or "", fmt(t["val_acc"], "{:.4f}"),
                       fmt(t["objective"], "{:.4f}"), "yes" if t.get("chosen") else "", t["params"]]
                      for t in data["search"]])
    if data.get("recipe"):
        out += ["## The recipe the final model was trained with (`config.yaml`)", "", "```yaml",
                data["recipe"].rstrip(), "```", ""]
    return out


def comparison(data: dict, name: str) -> list[str]:
    """The same recipe trained with each setting, judged on its grouped validation split."""
    runs = data["runs"]
    names = list(runs)
    out = [f"Backbone `{data['backbone']}` on `{data['data']}`, one run per setting, the same seed and "
           "validation split (photos of parts the runs never saw); each at its own threshold.", ""]
    out += metrics_table({k if name != "locate-castnet" else f"locate {k}": r["validation"] for k, r in runs.items()})
    out += [f"- `{k}`: `{r['evaluate_command']}`" for k, r in runs.items() if r.get("evaluate_command")] + [""]
    out += table(["", *names], [["training seconds", *(fmt(runs[k].get("train_seconds"), "{:.0f}") for k in names)],
                                ["lowest accuracy under the suite", *(f"{runs[k]['summary']['lowest_accuracy']:.4f}" for k in names)],
                                ["lowest under the camera conditions", *(f"{runs[k]['summary']['lowest_accuracy_camera']:.4f}" for k in names)],
                                ["photometric escapes", *(runs[k]["summary"]["photometric_escapes"] for k in names)],
                                ["camera escapes", *(runs[k]["summary"]["camera_escapes"] for k in names)]])
    first = runs[names[0]]["robustness"]
    out += ["## Accuracy (escapes / false rejects) per variation", ""]
    out += table(["variation", "kind", *names],
                 [[v, first[v]["kind"], *(f"{runs[k]['robustness'][v]['accuracy']:.4f} "
                                          f"({runs[k]['robustness'][v]['escapes']} / {runs[k]['robustness'][v]['false_rejects']})"
                                          for k in names)] for v in first])
    return out


def curve(data: dict) -> list[str]:
    """A learning curve: mean test accuracy on the fixed unseen parts per training-set size."""
    out = [f"Trained on growing subsets of `{data['data']}` ({data['pool_photos']} photos to draw from), "
           f"each judged on the same {data['test_photos']} photos of parts no subset holds; the mean over "
           "seeds, each run at its own threshold.", ""]
    out += table(["backbone", "photos", "seeds", "test accuracy (min-max)", "escapes", "false rejects",
                  "validation accuracy", "training s"],
                 [[r["backbone"], r["photos"] or "all", r["seeds"],
                   f"{r['accuracy']:.4f} ({r['accuracy_min']:.4f}-{r['accuracy_max']:.4f})",
                   f"{r['escapes']:.1f}", f"{r['false_rejects']:.1f}", f"{r['val_accuracy']:.4f}",
                   f"{r['train_seconds']:.0f}"] for r in data["mean"]])
    return out

