"""The API reference page (``/docs``): the OpenAPI schema rendered as one self-contained page.

FastAPI's own /docs and /redoc pages load their scripts from a CDN; a line PC may have no
internet, so this page has no scripts and no external assets. Each route shows its parameters,
its request body, the shape of its answer (``station.schemas``) and a curl command to copy.
"""

from __future__ import annotations

import json
from html import escape

PUBLIC = ("/healthz",)  # answered without a token
EXAMPLE_IDS = {"inspection_id": "INSPECTION_ID", "model_id": "MODEL_ID"}


def _type(prop: dict) -> str:
    """A property's type in a few characters: str, float?, list[Record], ..."""
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        return f"<a href='#shape-{name}'>{name}</a>"
    if "anyOf" in prop:
        kinds = [_type(p) for p in prop["anyOf"] if p.get("type") != "null"]
        optional = any(p.get("type") == "null" for p in prop["anyOf"])
        return " | ".join(kinds) + ("?" if optional else "")
    if prop.get("type") == "array":
        return f"list[{_type(prop.get('items', {}))}]"
    if "enum" in prop:
        return " | ".join(json.dumps(v) for v in prop["enum"])
    if "const" in prop:
        return json.dumps(prop["const"])
    return {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "object": "object"}.get(
        prop.get("type", ""), prop.get("type", "any"))


def _fields(component: dict) -> str:
    required = set(component.get("required", []))
    rows = "".join(f"<tr><td><code>{escape(name)}</code></td><td>{_type(p)}</td>"
                   f"<td>{'' if name in required else 'optional'}</td><td>{escape(p.get('description', ''))}</td></tr>"
                   for name, p in component.get("properties", {}).items())
    return f"<table><tr><th>field</th><th>type</th><th></th><th>what</th></tr>{rows}</table>"


def _component(schema: dict, ref: str) -> dict:
    return schema.get("components", {}).get("schemas", {}).get(ref.rsplit("/", 1)[-1], {})


def _example(component: dict) -> dict:
    """A JSON body with the required fields: the first allowed value, or a placeholder."""
    out = {}
    for name in component.get("required", []):
        p = component["properties"][name]
        out[name] = p["enum"][0] if "enum" in p else "..."
    return out


def curl(method: str, path: str, op: dict, schema: dict, base: str) -> str:
    parts = ["curl"]
    if path not in PUBLIC:
        parts.append('-H "Authorization: Bearer $CASTINSPECT_TOKEN"')
    body = op.get("requestBody", {}).get("content", {})
    for kind, content in body.items():
        component = _component(schema, content.get("schema", {}).get("$ref", ""))
        if kind == "multipart/form-data":
            for name, p in component.get("properties", {}).items():
                parts += [f"-F {name}=@part.jpg"] if p.get("type") != "array" else [f"-F {name}=@a.jpg -F {name}=@b.jpg"]
        elif kind == "application/json":
            parts += ['-H "Content-Type: application/json"', f"-d '{json.dumps(_example(component))}'"]
    if method != "get" and not body:
        parts.append(f"-X {method.upper()}")
    url = base.rstrip("/") + path
    for name, example in EXAMPLE_IDS.items():
        url = url.replace("{" + name + "}", example)
    return " ".join(parts + [url])


def api_reference(schema: dict, base: str = "http://127.0.0.1:8000") -> str:
    """The OpenAPI schema as one self-contained HTML page: each endpoint with its description,
    parameters, request body, answer and a curl example; then every answer's shape."""
    parts = [f"<h1>{escape(schema['info']['title'])} API</h1><p>{escape(schema['info'].get('description', ''))}</p>"
             "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI "
             f"{escape(schema.get('openapi', ''))}). The token header is needed only on a station run with a "
             "token (<code>--token</code> or <code>--tokens</code>).</p>"]
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
                parts.append(f"<p>request body ({escape(kind)}):</p>"
                             + _fields(_component(schema, content.get("schema", {}).get("$ref", ""))))
            ok = op.get("responses", {}).get("200", {}).get("content", {}).get("application/json", {}).get("schema", {})
            if "$ref" in ok:
                parts.append(f"<p>answer: {_type({'$ref': ok['$ref']})}</p>")
            responses = ", ".join(f"{code} {escape(r.get('description', ''))}" for code, r in op.get("responses", {}).items())
            parts.append(f"<p>responses: {responses}</p><pre class='curl'>{escape(curl(method, path, op, schema, base))}</pre>")
    parts.append("<h2>Shapes</h2>")
    for name, component in schema.get("components", {}).get("schemas", {}).items():
        if name.startswith(("Body_", "HTTPValidationError", "ValidationError")):
            continue
        parts.append(f"<h3 id='shape-{escape(name)}'>{escape(name)}</h3>{_fields(component)}")
    style = ("body{font:15px/1.4 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}"
             "pre{white-space:pre-wrap;background:#f4f4f6;padding:.5em}pre.curl{background:#1d2330;color:#e8ebf2}")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>castinspect API</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
