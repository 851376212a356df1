"""The demo: the bundled model judges the bundled sample photos; one HTML page shows the verdicts.

The sample photos are unchanged images from the casting dataset (CC BY-NC-ND 4.0, credited in the
docs); their folder names are their true classes.
"""

from __future__ import annotations

import html
import os
from importlib import resources
from pathlib import Path

from castinspect.core.records import Inspection
from castinspect.inference.annotate import annotate, png_data_uri
from castinspect.inference.predict import Predictor

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>castinspect demo</title><style>
body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto}}
.grid{{display:flex;flex-wrap:wrap;gap:12px}}figure{{margin:0;font-size:13px}}
.right{{color:#282}}.wrong{{color:#c22;font-weight:bold}}</style></head><body>
<h1>castinspect demo</h1><p>Bundled model <code>{model}</code>, threshold {threshold:.4f}. Photos:
"Real-life industrial dataset of casting product" by Ravirajsinh Dabhi, CC BY-NC-ND 4.0.</p>
<div class="grid">{cards}</div></body></html>"""


def sample_paths() -> list[Path]:
    root = Path(str(resources.files("castinspect") / "assets" / "samples"))
    return sorted(p for p in root.glob("*/*") if p.is_file())


def run_demo(out_dir: str | os.PathLike, model: str | os.PathLike | None = None) -> tuple[list[Inspection], Path]:
    """Judge the samples, write ``out_dir/index.html``; returns the inspections and the page."""
    predictor = Predictor.load(model)
    paths = sample_paths()
    results = list(predictor.predict([str(p) for p in paths], names=[f"{p.parent.name}/{p.name}" for p in paths],
                                     keep_photos=True))
    cards = []
    for path, insp in zip(paths, results):
        truth = path.parent.name
        verdict = "right" if insp.label == truth else "wrong"
        cards.append(
            f'<figure><img src="{png_data_uri(annotate(insp.photo, insp))}" alt="">'
            f'<figcaption>{html.escape(path.name)}<br>true class {html.escape(truth)}: '
            f'<span class="{verdict}">{verdict}</span></figcaption></figure>')
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = out / "index.html"
    page.write_text(PAGE.format(model=predictor.model_id, threshold=predictor.threshold, cards="".join(cards)))
    return results, page
