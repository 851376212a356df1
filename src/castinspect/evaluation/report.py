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
    plot_scores,
    plot_search,
    plot_sweep,
)
from castinspect.evaluation.rates import METHOD, shown
from castinspect.evaluation.results import decision_analysis, overlap_warning
from castinspect.evaluation.robustness import escaped_photos, has_review_band
from castinspect.evaluation.thresholds import Costs
from castinspect.inference.annotate import png_data_uri
from castinspect.inference.explain import HEATMAP_CAPTION, colour_bar, overlay
from castinspect.inference.predict import Predictor

MAX_ERRORS_SHOWN = 200
BORDERLINE_SHOWN = 12
RANDOM_SHOWN = 16
THUMB = 128


def read_history(path: str | os.PathLike) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _metrics_table(m: dict, title: str = "") -> str:
    r = m.get("rates", {})
    rows = [("images", m["n"]), ("accuracy, 95% interval", shown(r.get("accuracy"))), ("errors", m["errors"])]
    if "escapes" in m:
        rows += [
            ("defects passed as OK (escapes)", m["escapes"]),
            ("OK parts rejected (false rejects)", m["false_rejects"]),
            ("escape rate, 95% interval", shown(r.get("escape_rate"))),
            ("false-reject rate, 95% interval", shown(r.get("false_reject_rate"))),
            ("defect recall, 95% interval", shown(r.get("recall"))),
            ("ROC-AUC", f"{m['roc_auc']:.5f}"), ("PR-AUC", f"{m['pr_auc']:.5f}"),
            ("Brier score", f"{m['brier']:.5f}"), ("ECE", f"{m['ece']:.5f}"),
        ]
    if "review_share" in m:
        rows += [("review band", " to ".join(f"{v:g}" for v in m["review_band"])),
                 ("share sent to review", f"{m['review_share']:.4f} ({m['reviewed']} photos)"),
                 ("escapes outside review", m["auto_escapes"]),
                 ("false rejects outside review", m["auto_false_rejects"])]
    if "silent_errors" in m:
        rows += [
            ("unfamiliar photos", "not measured" if m["unfamiliar"] is None else m["unfamiliar"]),
            ("photos unlike the training photos (any reason)", m["unlike_training"]),
            ("accuracy on photos like / unlike them", " / ".join(
                "-" if a is None else f"{a:.4f}" for a in (m["accuracy_like_training"], m["accuracy_unlike_training"]))),
            ("silent errors (wrong and not flagged for review)", m["silent_errors"]),
        ]
    head = f"<tr><th colspan='2'>{html.escape(title)}</th></tr>" if title else ""
    body = head + "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    per = "".join(
        f"<tr><td>{html.escape(c)}</td><td>{v['precision']:.4f}</td><td>{v['recall']:.4f}</td>"
        f"<td>{v['f1']:.4f}</td><td>{v['support']}</td></tr>" for c, v in m["per_class"].items())
    return (f"<table>{body}</table><table><tr><th>class</th><th>precision</th><th>recall</th>"
            f"<th>F1</th><th>support</th></tr>{per}</table>")


def _gallery(ev: Evaluation, picks: list[int], predictor: Predictor) -> str:
    """Cards for the chosen photos of an evaluation: the photo and, beside it, its Grad-CAM
    heatmap scaled by p(defect) (when the predictor has the checkpoint), file name, true label,
    verdict and p(defect); the border says right (green) or wrong (red)."""
    cards, shown_, photos = [], [], []
    for i in picks:
        try:
            photos.append(predictor.prepare(read_image(ev.inspections[i].source)))
            shown_.append(i)
        except ImageError:
            continue
    strength = np.array([ev.inspections[i].p_defect if ev.inspections[i].p_defect is not None
                         else ev.inspections[i].score for i in shown_])
    heats = (predictor.heatmaps(np.stack(photos), strength) if photos and predictor.checkpoint is not None
             else None)
    for k, i in enumerate(shown_):
        insp, true = ev.inspections[i], predictor.classes[ev.labels[i]]
        small = cv2.resize(photos[k], (THUMB, THUMB), interpolation=cv2.INTER_AREA)
        picture = np.hstack([cv2.cvtColor(small, cv2.COLOR_GRAY2BGR), overlay(small, heats[k])]) \
            if heats is not None else small
        verdict = "right" if insp.label == true else "wrong"
        cards.append(f'<figure class="{verdict}{" pair" if heats is not None else ""}"><img src="{png_data_uri(picture)}" alt="">'
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
    heat = (f'<img class="bar" src="{png_data_uri(colour_bar(96))}" alt="colour scale"> {HEATMAP_CAPTION}'
            if predictor.checkpoint is not None else "No heatmaps: they need the model's checkpoint, not an exported .onnx.")
    return (f'<p class="note">Each photo as the model sees it, and its heatmap beside it. {heat} '
            "Green border: judged right; red: judged wrong.</p>"
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
                 search: list[dict] | None = None, provenance: dict | None = None,
                 costs: Costs | None = None) -> Path:
    """One HTML file with every plot inlined as a data URI, so it opens offline and travels alone.
    It opens with where the numbers come from (``provenance``) and, for each evaluation whose
    photos overlap the training photos, that warning, with the overlap-free numbers beside."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    warnings = [w for w in (overlap_warning(ev.metrics.get("overlap")) for ev in results) if w]
    parts += [f'<p class="warning" role="alert"><b>Warning:</b> {html.escape(w)}</p>' for w in warnings]
    parts.append(_provenance(provenance, predictor))
    history = (read_history(history_csv) if history_csv and Path(history_csv).exists()
               else predictor.checkpoint.info.get("history") if predictor.checkpoint is not None else None)
    if search:
        parts.append(_search_section(search))
    if history:
        parts.append(f'<h2>Training curves</h2><img src="{figure_uri(plot_history(history))}">')
    for ev in results:
        parts.append(_evaluation_section(ev, predictor, costs))
    if robustness:
        parts.append(_robustness_section(robustness, samples))
    return write_page(path, title, "".join(parts), extra_style=REPORT_STYLE)


REPORT_STYLE = """.warning{background:#fdecea;border-left:6px solid #c62828;padding:.6em 1em}
figure.pair{width:270px}figure.pair img{width:256px}img.bar{vertical-align:middle}"""


def _provenance(p: dict | None, predictor: Predictor) -> str:
    p = p or {}
    threshold = ("no OK class: the model classifies defect types (no p(defect), no threshold)"
                 if predictor.ok_index is None else
                 f"{predictor.threshold:.4f} (defective when p(defect) &ge; threshold)")
    rows = [("date", p.get("date")), ("castinspect", p.get("castinspect")), ("model", predictor.model_id),
            ("model file", p.get("model_file")), ("model file SHA-256", p.get("model_sha256")),
            ("threshold", threshold), ("review band", " to ".join(f"{v:g}" for v in predictor.review_band)
                                         if predictor.review_band else "none"),
            ("input, calibration", f"{predictor.input_size}px, temperature {predictor.temperature:.3f}"),
            ("data", p.get("data")), ("photos judged", p.get("photos")), ("command", p.get("command"))]
    body = "".join(f"<tr><th>{k}</th><td>{v if k == 'threshold' else html.escape(str(v))}</td></tr>"
                   for k, v in rows if v is not None)
    return f'<table class="provenance">{body}</table>'


def _evaluation_section(ev: Evaluation, predictor: Predictor, costs: Costs | None) -> str:
    m, classes = ev.metrics, predictor.classes
    out = [f"<h2>{html.escape(ev.name)}</h2>"]
    if ev.name == "test":
        out.append('<p class="note">Used for nothing but this report: no model, threshold or '
                   "calibration was chosen on it.</p>")
    overlap = m.get("overlap") or {}
    if overlap.get("count") is None:
        out.append(f'<p class="note">Overlap with the training photos: not known ({html.escape(overlap.get("reason", "not checked"))}).</p>')
    else:
        out.append(f'<p class="note">Overlap with the training photos ({html.escape(overlap["source"])}): '
                   f'{overlap["count"]} of {overlap["of"]} photos.</p>')
    out.append(_metrics_table(m, "all photos evaluated"))
    if "leak_free" in m:
        out.append(_metrics_table(m["leak_free"], f"without the {m['leak_free']['removed_as_copies']} "
                                                  "copies of training photos"))
    out.append(f'<p class="note">Intervals: {METHOD}; (k/n): events and photos counted.</p>')
    y = (ev.labels != predictor.ok_index).astype(int)
    p = defect_probability(ev.probs, predictor.ok_index)
    out.append(f'<p><img src="{figure_uri(plot_confusion(np.array(m["confusion_matrix"]), classes))}">')
    if 0 < y.sum() < len(y):
        out.append(f'<img src="{figure_uri(plot_roc_pr(y, p, predictor.threshold))}">')
    if predictor.ok_index is not None:
        out.append(f'<img src="{figure_uri(plot_reliability(y, p))}">')
    out.append("</p>")
    decision = decision_analysis(ev, predictor, costs, ev.name == "test")
    if decision is not None:
        out.append(_decision_section(decision, y, p, predictor))
    out.append(_galleries(ev, predictor))
    if ev.errors:
        items = "".join(f"<li>{html.escape(str(e))}</li>" for e in ev.errors)
        out.append(f"<h3>Unreadable files ({len(ev.errors)})</h3><ul>{items}</ul>")
    return "".join(out)


def _decision_section(d: dict, y: np.ndarray, p: np.ndarray, predictor: Predictor) -> str:
    at = d["at_threshold"]
    ok = predictor.classes[predictor.ok_index]
    text = (f"At the model's threshold {at['threshold']:.4f}: {at['escapes']} escapes, {at['false_rejects']} "
            f"false rejects, {at['reviewed']} parts to review")
    if "cost_per_1000" in at:
        text += f"; expected cost {at['cost_per_1000']:.2f} per 1,000 parts"
    best = d.get("cost_optimal")
    if best:
        c = best["costs"]
        text += (f". With an escape costing {c['escape']:g}, a false reject {c['false_reject']:g} and a review "
                 f"{c['review']:g}, the cheapest threshold on these photos is {best['threshold']:.4f}: "
                 f"{best['escapes']} escapes, {best['false_rejects']} false rejects, {best['reviewed']} to review, "
                 f"{best['cost_per_1000']:.2f} per 1,000 parts")
    warn = f'<p class="warning">{html.escape(d["warning"])}</p>' if d.get("warning") else ""
    scores = plot_scores(y, p, predictor.threshold, predictor.review_band, (ok, "defective"))
    sweep = plot_sweep(d["sweep"], predictor.threshold, best["threshold"] if best else None)
    return (f"<h3>The threshold as a decision</h3><p>{html.escape(text)}.</p>{warn}"
            f'<p><img src="{figure_uri(scores)}"><img src="{figure_uri(sweep)}"></p>')


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

