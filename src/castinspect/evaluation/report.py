"""The evaluation report: one self-contained HTML file (plots and photos inlined) that opens offline."""

from __future__ import annotations

import csv
import html
import math
import os
from pathlib import Path

import cv2
import numpy as np

from castinspect.core.decision import defect_probability
from castinspect.core.io import ImageError, read_image
from castinspect.evaluation.evaluate import Evaluation
from castinspect.evaluation.html import write_page
from castinspect.evaluation.plots import (
    figure_uri,
    plot_confusion,
    plot_history,
    plot_reliability,
    plot_roc_pr,
    plot_search,
)
from castinspect.evaluation.robustness import escaped_photos, has_review_band
from castinspect.inference.annotate import png_data_uri
from castinspect.inference.explain import overlay
from castinspect.inference.predict import Predictor

MAX_ERRORS_SHOWN = 200
BORDERLINE_SHOWN = 12
RANDOM_SHOWN = 16
THUMB = 128


def read_history(path: str | os.PathLike) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _metrics_table(m: dict) -> str:
    rows = [("images", m["n"]), ("accuracy", f"{m['accuracy']:.4f}"), ("errors", m["errors"])]
    if "escapes" in m:
        rows += [
            ("defects passed as OK (escapes)", m["escapes"]),
            ("OK parts rejected (false rejects)", m["false_rejects"]),
            ("defect recall", f"{m['defect_recall']:.4f}"),
            ("false-reject rate", f"{m['false_reject_rate']:.4f}"),
            ("ROC-AUC", f"{m['roc_auc']:.5f}"), ("PR-AUC", f"{m['pr_auc']:.5f}"),
            ("Brier score", f"{m['brier']:.5f}"), ("ECE", f"{m['ece']:.5f}"),
        ]
    if "silent_errors" in m:
        rows += [
            ("unfamiliar photos", "not measured" if m["unfamiliar"] is None else m["unfamiliar"]),
            ("photos unlike the training photos (any reason)", m["unlike_training"]),
            ("accuracy on photos like / unlike them", " / ".join(
                "-" if a is None else f"{a:.4f}" for a in (m["accuracy_like_training"], m["accuracy_unlike_training"]))),
            ("silent errors (wrong and not flagged for review)", m["silent_errors"]),
        ]
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    per = "".join(
        f"<tr><td>{html.escape(c)}</td><td>{v['precision']:.4f}</td><td>{v['recall']:.4f}</td>"
        f"<td>{v['f1']:.4f}</td><td>{v['support']}</td></tr>" for c, v in m["per_class"].items())
    return (f"<table>{body}</table><table><tr><th>class</th><th>precision</th><th>recall</th>"
            f"<th>F1</th><th>support</th></tr>{per}</table>")


def _gallery(ev: Evaluation, picks: list[int], predictor: Predictor) -> str:
    """Cards for the chosen photos of an evaluation: the photo with its Grad-CAM heatmap over it
    (when the predictor has the checkpoint), file name, true label, verdict and p(defect); the
    border says right (green) or wrong (red)."""
    cards, shown, photos = [], [], []
    for i in picks:
        try:
            photos.append(predictor.prepare(read_image(ev.inspections[i].source)))
            shown.append(i)
        except ImageError:
            continue
    heats = predictor.heatmaps(np.stack(photos)) if photos and predictor.checkpoint is not None else None
    for k, i in enumerate(shown):
        insp, true = ev.inspections[i], predictor.classes[ev.labels[i]]
        small = cv2.resize(photos[k], (THUMB, THUMB), interpolation=cv2.INTER_AREA)
        picture = overlay(small, heats[k]) if heats is not None else small
        verdict = "right" if insp.label == true else "wrong"
        cards.append(f'<figure class="{verdict}"><img src="{png_data_uri(picture)}" alt="">'
                     f"<figcaption>{html.escape(Path(insp.source).name)}<br>true {html.escape(true)}, "
                     f"judged {html.escape(insp.label or '')}<br>{_score(insp)}</figcaption></figure>")
    return f'<div class="gallery">{"".join(cards)}</div>' if cards else "<p>None.</p>"


def _score(insp) -> str:
    return f"p(defect) {insp.p_defect:.3f}" if insp.p_defect is not None else f"p({html.escape(insp.label)}) {insp.score:.3f}"


def _galleries(ev: Evaluation, predictor: Predictor) -> str:
    """Every misclassified photo, the correct ones nearest the threshold, and a random grid."""
    classes = predictor.classes
    wrong = [i for i, (insp, t) in enumerate(zip(ev.inspections, ev.labels)) if insp.label != classes[t]]
    right = [i for i in range(len(ev.inspections)) if i not in set(wrong)]
    if predictor.ok_index is None:  # no threshold: the least confident correct types
        borderline = sorted(right, key=lambda i: ev.inspections[i].score)[:BORDERLINE_SHOWN]
    else:
        borderline = sorted(right, key=lambda i: abs(math.log(max(ev.inspections[i].p_defect, 1e-9))
                                                     - math.log(max(predictor.threshold, 1e-9))))[:BORDERLINE_SHOWN]
    rng = np.random.default_rng(0)
    random = sorted(rng.choice(len(ev.inspections), min(RANDOM_SHOWN, len(ev.inspections)), replace=False).tolist())
    more = (f"<p>{len(wrong) - MAX_ERRORS_SHOWN} more not shown (see --json).</p>"
            if len(wrong) > MAX_ERRORS_SHOWN else "")
    heat = ("Heatmaps (Grad-CAM): red is where the model saw defect." if predictor.checkpoint is not None
            else "No heatmaps: they need the model's checkpoint, not an exported .onnx.")
    return (f'<p class="note">{heat} Green border: judged right; red: judged wrong.</p>'
            f"<h3>Misclassified ({len(wrong)})</h3>{_gallery(ev, wrong[:MAX_ERRORS_SHOWN], predictor)}{more}"
            f"<h3>Correct, nearest the threshold</h3>{_gallery(ev, borderline, predictor)}"
            f"<h3>Random photos</h3>{_gallery(ev, random, predictor)}")


def _robustness_section(results: dict, samples: dict[str, np.ndarray] | None) -> str:
    band = has_review_band(results)
    checked = all("silent_errors" in r for r in results.values())
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(r['kind'])}</td><td>{html.escape(r['description'])}</td>"
        f"<td>{r['accuracy']:.4f}</td><td>{r['escapes']}</td><td>{r['false_rejects']}</td>"
        + (f"<td>{r['reviewed']}</td><td>{r['auto_escapes']}</td><td>{r['auto_false_rejects']}</td>" if band else "")
        + (f"<td>{r['unlike_training']}</td><td>{r['silent_errors']}</td>" if checked else "")
        + (f'<td><img class="plain" src="{png_data_uri(samples[name])}" alt=""></td>' if samples and name in samples else "<td></td>")
        + "</tr>" for name, r in results.items())
    review_head = "<th>to review</th><th>escapes outside review</th><th>false rejects outside review</th>" if band else ""
    if checked:
        review_head += "<th>flagged unlike training</th><th>silent errors (wrong, not flagged)</th>"
    lists = [("Defects passed under a variation", escaped_photos(results))]  # each defect once
    if band:
        lists.append(("Defects passed without review", escaped_photos(results, key="passed_unreviewed")))
    items = "".join(
        f"<h3>{title} ({len(passed)})</h3><ul>"
        + "".join(f"<li><code>{html.escape(photo)}</code>: {html.escape(', '.join(names))}</li>"
                  for photo, names in passed.items()) + "</ul>"
        for title, passed in lists if passed)
    return ("<h2>Line variations</h2><p class='note'>Every photo judged again under each variation, at the "
            "same threshold; the sample column shows one photo as the model sees it.</p>"
            "<table><tr><th>variation</th><th>kind</th><th>what</th><th>accuracy</th><th>escapes</th>"
            f"<th>false rejects</th>{review_head}<th>sample</th></tr>{rows}</table>{items}")


def write_report(path: str | os.PathLike, results: list[Evaluation], predictor: Predictor,
                 history_csv: str | os.PathLike | None = None, title: str = "castinspect evaluation",
                 robustness: dict | None = None, samples: dict[str, np.ndarray] | None = None,
                 search: list[dict] | None = None) -> Path:
    """One HTML file with every plot inlined as a data URI, so it opens offline and travels alone."""
    classes = predictor.classes
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>model <code>{predictor.model_id}</code>, input {predictor.input_size}px, "
             + ("no OK class: the model classifies defect types (no p(defect), no threshold), "
                if predictor.ok_index is None else
                f"threshold {predictor.threshold:.4f} (defective when p(defect) &ge; threshold), ")
             + f"calibration temperature {predictor.temperature:.3f}</p>"]
    history = (read_history(history_csv) if history_csv and Path(history_csv).exists()
               else predictor.checkpoint.info.get("history") if predictor.checkpoint is not None else None)
    if search:
        parts.append(_search_section(search))
    if history:
        parts.append(f'<h2>Training curves</h2><img src="{figure_uri(plot_history(history))}">')
    types = predictor.ok_index is None
    for ev in results:
        m = ev.metrics
        y = (ev.labels != predictor.ok_index).astype(int)
        p = defect_probability(ev.probs, predictor.ok_index)
        parts.append(f"<h2>{html.escape(ev.name)}</h2>")
        if ev.name == "test":
            parts.append('<p class="note">Used for nothing but this report: no model, threshold or '
                         "calibration was chosen on it.</p>")
        parts.append(_metrics_table(m))
        parts.append(f'<p><img src="{figure_uri(plot_confusion(np.array(m["confusion_matrix"]), classes))}">')
        if 0 < y.sum() < len(y):
            parts.append(f'<img src="{figure_uri(plot_roc_pr(y, p))}">')
        if not types:
            parts.append(f'<img src="{figure_uri(plot_reliability(y, p))}">')
        parts.append("</p>")
        parts.append(_galleries(ev, predictor))
        if ev.errors:
            items = "".join(f"<li>{html.escape(str(e))}</li>" for e in ev.errors)
            parts.append(f"<h3>Unreadable files ({len(ev.errors)})</h3><ul>{items}</ul>")
    if robustness:
        parts.append(_robustness_section(robustness, samples))
    return write_page(path, title, "".join(parts))


def _search_section(rows: list[dict]) -> str:
    """The recipe search: every trial's recipe, validation numbers and time, and a plot."""
    def cell(v) -> str:
        return "" if v is None else f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))

    keys = ("trial", "state", "seconds", "steps", "val_acc", "val_loss", "objective", "chosen", "params")
    head = "".join(f"<th>{c}</th>" for c in ("trial", "state", "seconds", "steps", "val acc", "val loss",
                                              "objective", "chosen", "recipe"))
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(k))}</td>" for k in keys) + "</tr>" for r in rows)
    plot = f'<p><img src="{figure_uri(plot_search(rows))}"></p>' if any(r["objective"] is not None for r in rows) else ""
    return ("<h2>Recipe search</h2><p>Judged on the grouped validation split only (objective: error rate "
            "plus a tenth of the loss, lower is better); the final model was trained with the chosen "
            "trial's recipe: the best, unless it beat trial 0 (the configured recipe) by less than one "
            f"validation photo's error.</p>{plot}<table><tr>{head}</tr>{body}</table>")

