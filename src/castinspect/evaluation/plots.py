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

