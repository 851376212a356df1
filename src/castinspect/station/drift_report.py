"""``castinspect drift --report``: the drift monitor replayed over the log, as control charts."""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np

from castinspect.evaluation.html import write_page
from castinspect.evaluation.plots import figure_uri, plt
from castinspect.station.drift import ALARM, WARNING, DriftSettings

COLOURS = {WARNING: "#e69100", ALARM: "#c62828"}


def _series(history: list[dict], signal: str, key: str) -> np.ndarray:
    return np.array([(h["signals"][signal] or {}).get(key, np.nan) for h in history], dtype=float)


def _shade(ax, x: np.ndarray, history: list[dict]) -> None:
    for state, colour in COLOURS.items():
        on = np.array([h["state"] == state for h in history])
        ax.fill_between(x, 0, 1, where=on, color=colour, alpha=0.15, transform=ax.get_xaxis_transform(), lw=0)


def plot_history(history: list[dict]):
    """Four panels over the judgements: the reject rate on its p-chart, the shares of unfamiliar
    photos and of photos the quality checks named, and the two tests' p-values; the background is orange while the state was warning, red in alarm."""
    x = np.array([h["index"] for h in history])
    fig, axes = plt.subplots(4, 1, figsize=(9, 9), sharex=True)
    ax = axes[0]
    ax.plot(x, _series(history, "reject_rate", "value"), color="k", lw=1, label="reject rate (window)")
    ax.plot(x, _series(history, "reject_rate", "centre"), color="#2e8b3a", lw=1, label="centre line")
    limits = [(h["signals"]["reject_rate"] or {}).get("limits", [np.nan, np.nan]) for h in history]
    ax.plot(x, [lo for lo, _ in limits], "--", color="#c62828", lw=1, label="control limits (3 sigma)")
    ax.plot(x, [hi for _, hi in limits], "--", color="#c62828", lw=1)
    ax.set_ylabel("reject rate")
    ax.legend(fontsize=7, loc="upper left")
    ax = axes[1]
    ax.plot(x, _series(history, "unfamiliar", "value"), color="k", lw=1, label="unfamiliar share (window)")
    ax.plot(x, _series(history, "quality", "value"), color="#4a6fa5", lw=1, label="named by the quality checks")
    ax.plot(x, _series(history, "unfamiliar", "expected"), "--", color="#2e8b3a", lw=1, label="expected at most")
    ax.set_ylabel("unlike training")
    ax.legend(fontsize=7, loc="upper left")
    for ax, signal, title in ((axes[2], "familiarity", "familiarity KS p"), (axes[3], "p_defect", "p(defect) KS p")):
        ax.semilogy(x, np.clip(_series(history, signal, "p_value"), 1e-12, 1), color="k", lw=1, label=signal)
        ax.axhline(0.01, ls="--", color=COLOURS[WARNING], lw=1)
        ax.axhline(0.001, ls="--", color=COLOURS[ALARM], lw=1)
        ax.set_ylabel(title)
    anomaly = _series(history, "anomaly", "p_value")
    if not np.isnan(anomaly).all():  # a station with an anomaly model: its scores' test beside p(defect)'s
        axes[3].semilogy(x, np.clip(anomaly, 1e-12, 1), color="#4a6fa5", lw=1, label="anomaly score")
        axes[3].set_ylabel("KS p")
        axes[3].legend(fontsize=7, loc="lower left")
    axes[-1].set_xlabel("judgements (oldest first)")
    for ax in axes:
        _shade(ax, x, history)
    fig.tight_layout()
    return fig


def summarize(history: list[dict]) -> dict:
    """Where the states fell: the first warning and alarm, and the share of judgements in each."""
    out: dict = {"judged": history[-1]["index"] if history else 0, "now": history[-1]["state"] if history else None}
    for state in (WARNING, ALARM):
        first = next((h for h in history if h["state"] == state), None)
        out[f"first_{state}"] = None if first is None else {"index": first["index"], "time": first["time"],
                                                             "reasons": first["reasons"]}
        out[f"{state}_share"] = sum(h["state"] == state for h in history) / len(history) if history else None
    return out


def write_drift_report(path: str | os.PathLike, history: list[dict], settings: DriftSettings, source: str) -> Path:
    summary = summarize(history)
    rows = [("log", source), ("judgements", summary["judged"]), ("window", settings.window),
            ("baseline (first judgements)", settings.baseline), ("state now", summary["now"] or "-")]
    for state in (WARNING, ALARM):
        first = summary[f"first_{state}"]
        rows.append((f"first {state}", "never" if first is None else
                     f"judgement {first['index']} ({first['time']}): {'; '.join(first['reasons'])}"))
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    chart = f'<img src="{figure_uri(plot_history(history))}" alt="drift charts">' if history else "<p>no judgements</p>"
    body = (f"<h1>Drift at the line</h1><table>{table}</table>{chart}"
            "<p class='note'>Each point is the monitor's state after that judgement, over the window of "
            "the judgements before it: the reject rate on a p-chart (centre line and 3-sigma limits "
            "from the baseline), the share of photos the model found unfamiliar, and the p-values of "
            "the tests on familiarity (against the calibrated uniform spread) and on p(defect) "
            "(and the anomaly model's score, where the station has one) against the baseline; "
            "dashed lines at 0.01 (warning) and 0.001 (alarm).</p>")
    return write_page(path, "castinspect drift", body, "img{max-width:100%}")
