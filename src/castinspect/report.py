"""Plots (matplotlib, Agg) and one self-contained HTML report that opens offline."""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from castinspect.decision import defect_probability  # noqa: E402
from castinspect.io import ImageError, load_for_model  # noqa: E402
from castinspect.metrics import pr_curve, roc_curve  # noqa: E402

if TYPE_CHECKING:
    from castinspect.evaluate import Evaluation
    from castinspect.predict import Predictor

MAX_ERRORS_SHOWN = 200
BORDERLINE_SHOWN = 12
RANDOM_SHOWN = 16
THUMB = 128


def _fig_to_uri(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def plot_confusion(cm: np.ndarray, classes: list[str]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center",
                color="white" if v > cm.max() / 2 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=30)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return fig


def plot_roc_pr(y: np.ndarray, p: np.ndarray) -> plt.Figure:
    fig, (a, b) = plt.subplots(1, 2, figsize=(7.2, 3.2))
    fpr, tpr, _ = roc_curve(y, p)
    a.plot(fpr, tpr)
    a.plot([0, 1], [0, 1], ":", color="grey")
    a.set(xlabel="false-reject rate (OK scrapped)", ylabel="defect recall", title="ROC")
    precision, recall, _ = pr_curve(y, p)
    b.plot(recall, precision)
    b.set(xlabel="defect recall", ylabel="precision", title="Precision-recall", ylim=(0, 1.02))
    fig.tight_layout()
    return fig


def plot_reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> plt.Figure:
    """Observed defect rate against predicted p(defect), per bin; the diagonal is perfect."""
    from castinspect.metrics import reliability

    rows = [r for r in reliability(y, p, bins) if r["n"]]
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.plot([r["mean_p"] for r in rows], [r["observed"] for r in rows], "o-")
    for r in rows:
        ax.annotate(str(r["n"]), (r["mean_p"], r["observed"]), fontsize=7, xytext=(3, -9), textcoords="offset points")
    ax.set(xlabel="predicted p(defect)", ylabel="observed defect rate", title="Reliability", xlim=(0, 1), ylim=(0, 1))
    return fig


def plot_history(rows: list[dict]) -> plt.Figure:
    ep = [int(r["epoch"]) for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(7.2, 3.0))
    a.plot(ep, [float(r["train_loss"]) for r in rows], label="train")
    a.plot(ep, [float(r["val_loss"]) for r in rows], label="validation")
    a.set(xlabel="epoch", ylabel="loss", yscale="log")
    a.legend()
    b.plot(ep, [float(r["train_acc"]) for r in rows], label="train (augmented)")
    b.plot(ep, [float(r["val_acc"]) for r in rows], label="validation")
    b.set(xlabel="epoch", ylabel="accuracy")
    b.legend()
    fig.tight_layout()
    return fig


def read_history(path: str | os.PathLike) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _thumb(path: str) -> str:
    try:
        img = load_for_model(path, 128)
    except ImageError:
        return ""
    from castinspect.annotate import png_data_uri
    return png_data_uri(img)


def _metrics_table(m: dict) -> str:
    rows = [
        ("images", m["n"]), ("accuracy", f"{m['accuracy']:.4f}"), ("errors", m["errors"]),
        ("defects passed as OK (escapes)", m["escapes"]),
        ("OK parts rejected (false rejects)", m["false_rejects"]),
        ("defect recall", f"{m['defect_recall']:.4f}"),
        ("false-reject rate", f"{m['false_reject_rate']:.4f}"),
        ("ROC-AUC", f"{m['roc_auc']:.5f}"), ("PR-AUC", f"{m['pr_auc']:.5f}"),
        ("Brier score", f"{m['brier']:.5f}"), ("ECE", f"{m['ece']:.5f}"),
    ]
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    per = "".join(
        f"<tr><td>{html.escape(c)}</td><td>{v['precision']:.4f}</td><td>{v['recall']:.4f}</td>"
        f"<td>{v['f1']:.4f}</td><td>{v['support']}</td></tr>" for c, v in m["per_class"].items())
    return (f"<table>{body}</table><table><tr><th>class</th><th>precision</th><th>recall</th>"
            f"<th>F1</th><th>support</th></tr>{per}</table>")


def _gallery(ev: "Evaluation", picks: list[int], predictor: "Predictor") -> str:
    """Cards for the chosen photos of an evaluation: the photo with its Grad-CAM heatmap over it
    (when the predictor has the checkpoint), file name, true label, verdict and p(defect); the
    border says right (green) or wrong (red)."""
    from castinspect.annotate import png_data_uri
    from castinspect.explain import overlay

    cards, shown, photos = [], [], []
    for i in picks:
        try:
            photos.append(load_for_model(ev.inspections[i].source, predictor.input_size))
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
                     f"judged {html.escape(insp.label or '')}<br>p(defect) {insp.p_defect:.3f}</figcaption></figure>")
    return f'<div class="gallery">{"".join(cards)}</div>' if cards else "<p>None.</p>"


def _galleries(ev: "Evaluation", predictor: "Predictor") -> str:
    """Every misclassified photo, the correct ones nearest the threshold, and a random grid."""
    classes = predictor.classes
    wrong = [i for i, (insp, t) in enumerate(zip(ev.inspections, ev.labels)) if insp.label != classes[t]]
    right = [i for i in range(len(ev.inspections)) if i not in set(wrong)]
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


STYLE = """body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 1em .5em 0;display:inline-table;vertical-align:top}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f3f3f3}
.gallery{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0;width:140px;font-size:12px}
figure img{width:128px;border:3px solid #999}figure.wrong img{border-color:#c33}
figure.right img{border-color:#2a2}img.plain{width:96px}.note{color:#555;font-size:14px}"""


def _robustness_section(results: dict, samples: dict[str, np.ndarray] | None) -> str:
    from castinspect.annotate import png_data_uri
    from castinspect.robustness import escaped_photos, has_review_band

    band = has_review_band(results)
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(r['kind'])}</td><td>{html.escape(r['description'])}</td>"
        f"<td>{r['accuracy']:.4f}</td><td>{r['escapes']}</td><td>{r['false_rejects']}</td>"
        + (f"<td>{r['reviewed']}</td><td>{r['auto_escapes']}</td><td>{r['auto_false_rejects']}</td>" if band else "")
        + (f'<td><img class="plain" src="{png_data_uri(samples[name])}" alt=""></td>' if samples and name in samples else "<td></td>")
        + "</tr>" for name, r in results.items())
    review_head = "<th>to review</th><th>escapes outside review</th><th>false rejects outside review</th>" if band else ""
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


def write_report(path: str | os.PathLike, results: list["Evaluation"], predictor: "Predictor",
                 history_csv: str | os.PathLike | None = None, title: str = "castinspect evaluation",
                 robustness: dict | None = None, samples: dict[str, np.ndarray] | None = None) -> Path:
    """One HTML file with every plot inlined as a data URI, so it opens offline and travels alone."""
    classes = predictor.classes
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>model <code>{predictor.model_id}</code>, input {predictor.input_size}px, "
             f"threshold {predictor.threshold:.4f} (defective when p(defect) &ge; threshold), "
             f"calibration temperature {predictor.temperature:.3f}</p>"]
    history = (read_history(history_csv) if history_csv and Path(history_csv).exists()
               else predictor.checkpoint.info.get("history") if predictor.checkpoint is not None else None)
    if history:
        parts.append(f'<h2>Training curves</h2><img src="{_fig_to_uri(plot_history(history))}">')
    for ev in results:
        m = ev.metrics
        y = (ev.labels != predictor.ok_index).astype(int)
        p = defect_probability(ev.probs, predictor.ok_index)
        parts.append(f"<h2>{html.escape(ev.name)}</h2>")
        if ev.name == "test":
            parts.append('<p class="note">Used for nothing but this report: no model, threshold or '
                         "calibration was chosen on it.</p>")
        parts.append(_metrics_table(m))
        parts.append(f'<p><img src="{_fig_to_uri(plot_confusion(np.array(m["confusion_matrix"]), classes))}">')
        if 0 < y.sum() < len(y):
            parts.append(f'<img src="{_fig_to_uri(plot_roc_pr(y, p))}">')
        parts.append(f'<img src="{_fig_to_uri(plot_reliability(y, p))}"></p>')
        parts.append(_galleries(ev, predictor))
        if ev.errors:
            items = "".join(f"<li>{html.escape(str(e))}</li>" for e in ev.errors)
            parts.append(f"<h3>Unreadable files ({len(ev.errors)})</h3><ul>{items}</ul>")
    if robustness:
        parts.append(_robustness_section(robustness, samples))
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc)
    return path


def write_audit_report(path: str | os.PathLike, summary: dict, shown: int = 40) -> Path:
    """The audit as one HTML file: counts, then the closest cross-split pairs side by side, then
    the cross-split pairs nearest the threshold (where a wrong call would be)."""
    cross = [p for p in summary["pairs"] if p["split_a"] != p["split_b"]]
    near_threshold = sorted(cross, key=lambda p: p["score"])[:shown // 2]
    counts = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in (
        ("images", summary["images"]), ("class counts", summary["class_counts"]),
        ("sizes", summary["sizes"]), ("modes", summary["modes"]),
        ("unreadable", len(summary["unreadable"])),
        ("byte-identical to a train file (exact_cross_split)", summary["exact_cross_split"]),
        ("with a near-duplicate in train (near_cross_split)", summary["near_cross_split"]),
        ("with a near-duplicate in the same split", summary["near_within_split"]),
        ("near-duplicate groups (physical parts, at most)", summary["groups"]),
        ("near-duplicate pairs with different labels", summary["label_conflicts"]),
        ("threshold (aligned detail correlation)", summary["threshold"])))

    def pair_rows(pairs: list[dict]) -> str:
        return "".join(
            f'<figure><img src="{_thumb(p["a"])}" alt=""><img src="{_thumb(p["b"])}" alt="">'
            f"<figcaption>{html.escape(p['split_a'])}/{html.escape(Path(p['a']).name)} ~ "
            f"{html.escape(p['split_b'])}/{html.escape(Path(p['b']).name)}<br>score {p['score']:.4f}"
            f"{' (identical bytes)' if p['exact'] else ''}"
            f"{' <b>labels differ</b>' if p.get('label_a') != p.get('label_b') else ''}</figcaption></figure>"
            for p in pairs)

    unreadable = "".join(f"<li>{html.escape(u['path'])}: {html.escape(u['reason'])}</li>"
                         for u in summary["unreadable"])
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>castinspect audit</title>"
           f"<style>{STYLE} .pairs figure{{width:270px}} .pairs img{{width:128px;border:1px solid #999}}"
           f"</style></head><body><h1>Dataset audit</h1><table>{counts}</table>"
           f"<h2>Closest cross-split pairs</h2><div class='gallery pairs'>{pair_rows(cross[:shown])}</div>"
           f"<h2>Cross-split pairs nearest the threshold</h2>"
           f"<div class='gallery pairs'>{pair_rows(near_threshold)}</div>"
           f"<h2>Unreadable files</h2><ul>{unreadable or '<li>none</li>'}</ul></body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc)
    return path
