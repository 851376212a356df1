"""What the HTML reports share: one style sheet, thumbnails, and writing a page that opens offline."""

from __future__ import annotations

import html
import os
from pathlib import Path

from castinspect.core.io import ImageError, load_for_model
from castinspect.inference.annotate import png_data_uri

STYLE = """body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 1em .5em 0;display:inline-table;vertical-align:top}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f3f3f3}
.gallery{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0;width:140px;font-size:12px}
figure img{width:128px;border:3px solid #999}figure.wrong img{border-color:#c33}
figure.right img{border-color:#2a2}img.plain{width:96px}.note{color:#555;font-size:14px}"""




def thumb_uri(path: str, size: int = 128) -> str:
    """A photo as the model would see it at ``size`` px, as a data URI; "" when unreadable."""
    try:
        return png_data_uri(load_for_model(path, size))
    except ImageError:
        return ""


def write_page(path: str | os.PathLike, title: str, body: str, extra_style: str = "") -> Path:
    """One self-contained HTML file: every image inlined as a data URI, so it opens offline."""
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{STYLE}{extra_style}</style></head><body>{body}</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc)
    return path
