"""The demo: the bundled model judges the bundled sample photos; one HTML page shows the verdicts.

The sample photos are unchanged images from the casting dataset (CC BY-NC-ND 4.0, credited in the
docs); their folder names are their true classes.
"""

from __future__ import annotations

import html
import math
import os
from importlib import resources
from pathlib import Path

from castinspect.core.records import Inspection
from castinspect.inference.annotate import annotate, png_data_uri
from castinspect.inference.explain import HEATMAP_CAPTION, side_by_side
from castinspect.inference.predict import Predictor

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>castinspect demo</title><style>
body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
.grid{{display:flex;flex-wrap:wrap;gap:14px}}figure{{margin:0;font-size:13px;width:480px}}figure img{{width:480px}}
.right{{color:#282}}.wrong{{color:#c22;font-weight:bold}}.borderline{{background:#fff4e0;padding:.6em 1em;border-left:6px solid #e69100}}
pre{{background:#f4f4f6;padding:.6em 1em}}.note{{color:#555}}</style></head><body>
<h1>castinspect demo</h1><p>The bundled model <code>{model}</code> (threshold {threshold:.4f}: defective when p(defect)
&ge; threshold) judged {n} photos of pump impellers; each shows the photo, the heatmap beside it and
its colour scale. <span class="note">{caption}</span></p>
<div class="borderline"><h2>The least certain one</h2>{borderline}</div>
<h2>Every verdict</h2><div class="grid">{cards}</div>
<h2>On your own photos</h2><pre>{commands}</pre>
<p class="note">Photos: "Real-life industrial dataset of casting product" by Ravirajsinh Dabhi, CC BY-NC-ND 4.0,
unchanged.</p></body></html>"""

NEXT = """castinspect predict my_photos/ --review-band 0.05 0.5     # judge your photos; the unsure ones go to review
castinspect train my_data/ --out runs/mine                    # your own model, from my_data/<class>/ folders
castinspect evaluate my_data/test --model runs/mine/model.ckpt --cost-escape 500 --cost-false-reject 20 --report test.html"""


def sample_paths() -> list[Path]:
    root = Path(str(resources.files("castinspect") / "assets" / "samples"))
    return sorted(p for p in root.glob("*/*") if p.is_file())


def _card(path: Path, insp: Inspection, predictor: Predictor) -> str:
    truth = path.parent.name
    verdict = "right" if insp.label == truth else "wrong"
    picture = side_by_side(insp.photo, insp.heatmap, insp, width=240) if insp.heatmap is not None \
        else annotate(insp.photo, insp)
    return (f'<figure><img src="{png_data_uri(picture)}" alt="">'
            f'<figcaption>{html.escape(path.name)}: p(defect) {insp.p_defect:.3f}, true class {html.escape(truth)}: '
            f'<span class="{verdict}">{verdict}</span></figcaption></figure>')


def run_demo(out_dir: str | os.PathLike, model: str | os.PathLike | None = None) -> tuple[list[Inspection], Path]:
    """Judge the samples (with their heatmaps), write ``out_dir/index.html``; returns the
    inspections and the page."""
    predictor = Predictor.load(model)
    paths = sample_paths()
    heatmaps = predictor.checkpoint is not None
    results = []
    for p in paths:
        insp = predictor.predict_one(p, f"{p.parent.name}/{p.name}", heatmap=heatmaps)
        results.append(insp)
    cards = [_card(p, insp, predictor) for p, insp in zip(paths, results)]
    # the photo whose p(defect) lies nearest the threshold (on the log-odds scale): where a review band helps
    near = min(range(len(results)), key=lambda i: abs(_logit(results[i].p_defect) - _logit(predictor.threshold)))
    b = results[near]
    why = f" ({html.escape(', '.join(b.reasons))})" if b.reasons else ""
    borderline = (f"<p>{html.escape(paths[near].name)}: p(defect) {b.p_defect:.3f} against the threshold "
                  f"{predictor.threshold:.3f}: {b.decision.upper()}{why}. A part this close to the threshold is "
                  "where a person's look pays: <code>--review-band 0.05 0.5</code> (a band chosen on validation "
                  "photos) sends every such part to review, and the station's review queue settles it.</p>"
                  + cards[near])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = out / "index.html"
    page.write_text(PAGE.format(model=predictor.model_id, threshold=predictor.threshold, n=len(results),
                                caption=HEATMAP_CAPTION if heatmaps else "", borderline=borderline,
                                cards="".join(cards), commands=html.escape(NEXT)))
    return results, page


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))
