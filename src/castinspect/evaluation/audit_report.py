"""The dataset audit as one HTML page: counts, then the closest cross-split pairs side by side."""

from __future__ import annotations

import html
import os
from pathlib import Path

from castinspect.evaluation.html import thumb_uri, write_page


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
            f'<figure><img src="{thumb_uri(p["a"])}" alt=""><img src="{thumb_uri(p["b"])}" alt="">'
            f"<figcaption>{html.escape(p['split_a'])}/{html.escape(Path(p['a']).name)} ~ "
            f"{html.escape(p['split_b'])}/{html.escape(Path(p['b']).name)}<br>score {p['score']:.4f}"
            f"{' (identical bytes)' if p['exact'] else ''}"
            f"{' <b>labels differ</b>' if p.get('label_a') != p.get('label_b') else ''}</figcaption></figure>"
            for p in pairs)

    unreadable = "".join(f"<li>{html.escape(u['path'])}: {html.escape(u['reason'])}</li>"
                         for u in summary["unreadable"])
    body = (f"<h1>Dataset audit</h1><table>{counts}</table>"
            f"<h2>Closest cross-split pairs</h2><div class='gallery pairs'>{pair_rows(cross[:shown])}</div>"
            f"<h2>Cross-split pairs nearest the threshold</h2>"
            f"<div class='gallery pairs'>{pair_rows(near_threshold)}</div>"
            f"<h2>Unreadable files</h2><ul>{unreadable or '<li>none</li>'}</ul>")
    return write_page(path, "castinspect audit", body,
                      ".pairs figure{width:270px} .pairs img{width:128px;border:1px solid #999}")
