"""The report's figures (matplotlib, Agg), each returned as a Figure; ``figure_uri`` inlines one."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from castinspect.evaluation.metrics import pr_curve, reliability, roc_curve  # noqa: E402


def figure_uri(fig: plt.Figure) -> str:
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


def plot_roc_pr(y: np.ndarray, p: np.ndarray, threshold: float | None = None) -> plt.Figure:
    """ROC and precision-recall over their whole range, the operating point (the threshold) marked."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(7.2, 3.2))
    fpr, tpr, _ = roc_curve(y, p)
    a.plot(fpr, tpr)
    a.plot([0, 1], [0, 1], ":", color="grey")
    a.set(xlabel="false-reject rate (OK scrapped)", ylabel="defect recall", title="ROC", xlim=(-0.01, 1.01),
          ylim=(0, 1.02))
    precision, recall, _ = pr_curve(y, p)
    b.plot(recall, precision)
    b.set(xlabel="defect recall", ylabel="precision", title="Precision-recall", xlim=(0, 1.02), ylim=(0, 1.02))
    if threshold is not None:
        said = p >= threshold
        tp, fp = int((said & (y == 1)).sum()), int((said & (y == 0)).sum())
        rec, fr = tp / max(int(y.sum()), 1), fp / max(int((y == 0).sum()), 1)
        prec = tp / max(tp + fp, 1)
        for ax, (x, v) in ((a, (fr, rec)), (b, (rec, prec))):
            ax.plot([x], [v], "o", color="#c62828", label=f"threshold {threshold:.3f}")
            ax.legend(loc="lower right" if ax is a else "lower left", fontsize=8)
    fig.tight_layout()
    return fig


def plot_reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> plt.Figure:
    """Observed defect rate against predicted p(defect), per bin (the diagonal is perfect); below,
    how many photos each bin holds (log scale), so that no count sits on the curve or the axes."""
    rows = [r for r in reliability(y, p, bins) if r["n"]]
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(3.6, 4.0), sharex=True, height_ratios=(3, 1))
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.plot([r["mean_p"] for r in rows], [r["observed"] for r in rows], "o-")
    ax.set(ylabel="observed defect rate", title="Reliability", xlim=(0, 1), ylim=(-0.02, 1.02))
    counts.bar([(r["lo"] + r["hi"]) / 2 for r in rows], [r["n"] for r in rows], width=0.9 / bins, color="#8a94a8")
    counts.set(xlabel="predicted p(defect)", ylabel="photos", yscale="log")
    fig.tight_layout()
    return fig


def plot_scores(y: np.ndarray, p: np.ndarray, threshold: float, band: tuple[float, float] | None,
                classes: tuple[str, str] = ("OK", "defective")) -> plt.Figure:
    """p(defect) of the good and of the defective photos, the threshold (and review band) drawn:
    where the two overlap is where the threshold trades escapes for false rejects."""
    fig, ax = plt.subplots(figsize=(7.2, 2.8))
    edges = np.linspace(0, 1, 41)
    for label, mask, colour in ((classes[0], y == 0, "#2e8b3a"), (classes[1], y == 1, "#c62828")):
        ax.hist(p[mask], bins=edges, alpha=0.55, color=colour, label=f"{label} ({int(mask.sum())})")
    if band:
        ax.axvspan(band[0], band[1], color="#e69100", alpha=0.15, label=f"review band {band[0]:g}-{band[1]:g}")
    ax.axvline(threshold, color="black", ls="--", label=f"threshold {threshold:.3f}")
    ax.set(xlabel="p(defect)", ylabel="photos", yscale="log", xlim=(0, 1), title="Scores per class")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_sweep(rows: list[dict], threshold: float, optimum: float | None = None) -> plt.Figure:
    """Escape and false-reject rates (and the review share) across thresholds; with costs, the
    expected cost per 1,000 parts beside, the cheapest threshold marked."""
    costs = "cost_per_1000" in rows[0]
    fig, axes = plt.subplots(1, 2 if costs else 1, figsize=(7.2 if costs else 4.2, 3.0), squeeze=False)
    t = [r["threshold"] for r in rows]
    a = axes[0][0]
    a.plot(t, [r["escape_rate"] for r in rows], color="#c62828", label="escape rate (of defects)")
    a.plot(t, [r["false_reject_rate"] for r in rows], color="#2e8b3a", label="false-reject rate (of OK)")
    if any(r["review_share"] for r in rows):
        a.plot(t, [r["review_share"] for r in rows], color="#e69100", label="share to review")
    a.axvline(threshold, color="black", ls="--", lw=1)
    a.set(xlabel="threshold", ylabel="rate", xlim=(0, 1), ylim=(-0.02, 1.02), title="Across thresholds")
    a.legend(fontsize=7)
    if costs:
        b = axes[0][1]
        b.plot(t, [r["cost_per_1000"] for r in rows], color="#1d2330")
        b.axvline(threshold, color="black", ls="--", lw=1, label=f"threshold {threshold:.3f}")
        if optimum is not None:
            b.axvline(optimum, color="#c62828", lw=1.5, label=f"cheapest {optimum:.3f}")
        b.set_yscale("symlog", linthresh=1)  # the cheap region stays visible beside the dear extremes
        b.set(xlabel="threshold", ylabel="expected cost per 1,000 parts", xlim=(0, 1), title="Cost")
        b.legend(fontsize=7)
    fig.tight_layout()
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


def plot_search(rows: list[dict]) -> plt.Figure:
    """Each search trial's validation objective (lower is better), pruned trials marked, and the
    best so far."""
    fig, ax = plt.subplots(figsize=(6.0, 3.0))
    done = [r for r in rows if r["objective"] is not None]
    for state, marker in (("complete", "o"), ("pruned", "x")):
        pick = [r for r in done if r["state"] == state]
        ax.scatter([r["trial"] for r in pick], [r["objective"] for r in pick], marker=marker, label=state)
    complete = sorted((r for r in done if r["state"] == "complete"), key=lambda r: r["trial"])
    if complete:
        best = np.minimum.accumulate([r["objective"] for r in complete])
        ax.step([r["trial"] for r in complete], best, where="post", label="best so far")
    ax.set(xlabel="trial", ylabel="validation error + 0.1 x loss", yscale="log")
    ax.legend()
    fig.tight_layout()
    return fig

