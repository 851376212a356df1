"""Put the line-variation results of several models on one validation split side by side, as a
JSON result the docs render (the same layout as benchmarks/locate.py's).

    castinspect evaluate runs/A/split.csv --split val --model runs/A/model.ckpt --robustness --json a.json
    castinspect evaluate runs/B/split.csv --split val --model runs/B/model.ckpt --robustness --json b.json
    .venv/bin/python benchmarks/compare_suites.py --name moved_framing fixed=a.json moved=b.json

Each NAME=FILE is one model's `evaluate --robustness --json` on the same photos; nothing is
measured here. Writes benchmarks/results/<name>.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from castinspect.core.provenance import provenance


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("results", nargs="+", help="NAME=FILE")
    args = ap.parse_args()
    runs, data = {}, None
    for item in args.results:
        name, path = item.split("=", 1)
        r = json.loads(Path(path).read_text())
        data = data or r["data"]
        runs[name] = {"validation": r["evaluation"], "robustness": r["robustness"], "summary": r["robustness_summary"],
                      "model": r["model"], "evaluate_command": r["provenance"]["command"], "train_seconds": None}
    out = Path("benchmarks/results") / f"{args.name}.json"
    out.write_text(json.dumps({"provenance": provenance(), "data": data, "backbone": args.backbone,
                               "runs": runs}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
