"""The API reference page (``/docs``): the OpenAPI schema rendered as one self-contained page.

FastAPI's own /docs and /redoc pages load their scripts from a CDN; a line PC may have no
internet, so this page has no scripts and no external assets.
"""

from __future__ import annotations

from html import escape


def api_reference(schema: dict) -> str:
    """The OpenAPI schema as one self-contained HTML page: each endpoint with its description,
    parameters, request body and responses."""
    parts = [f"<h1>{escape(schema['info']['title'])} API</h1><p>{escape(schema['info'].get('description', ''))}</p>"
             "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI "
             f"{escape(schema.get('openapi', ''))}).</p>"]
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            parts.append(f"<h2><code>{method.upper()} {escape(path)}</code></h2>")
            parts.append(f"<p><b>{escape(op.get('summary', ''))}</b></p>")
            if op.get("description"):
                parts.append(f"<pre>{escape(op['description'])}</pre>")
            rows = [f"<tr><td><code>{escape(p['name'])}</code></td><td>{p['in']}</td><td>{'yes' if p.get('required') else 'no'}</td>"
                    f"<td>{escape(p.get('description', '') or p.get('schema', {}).get('description', ''))}</td></tr>"
                    for p in op.get("parameters", [])]
            if rows:
                parts.append("<table><tr><th>parameter</th><th>in</th><th>required</th><th>what</th></tr>"
                             + "".join(rows) + "</table>")
            for kind, content in op.get("requestBody", {}).get("content", {}).items():
                ref = content.get("schema", {}).get("$ref", "")
                fields = schema.get("components", {}).get("schemas", {}).get(ref.rsplit("/", 1)[-1], {})
                described = [f"<code>{escape(k)}</code> {escape(v.get('description', ''))}"
                             for k, v in fields.get("properties", {}).items()]
                parts.append(f"<p>body ({escape(kind)}): {'; '.join(described)}</p>")
            responses = ", ".join(f"{code} {escape(r.get('description', ''))}" for code, r in op.get("responses", {}).items())
            parts.append(f"<p>responses: {responses}</p>")
    style = ("body{font:15px/1.4 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}"
             "pre{white-space:pre-wrap;background:#f4f4f6;padding:.5em}")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>castinspect API</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
