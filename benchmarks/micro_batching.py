"""The station with and without micro-batching, in one run (``load_test.py`` twice).

    .venv/bin/python benchmarks/micro_batching.py [--clients 16] [--seconds 20] [--json out.json]

The same server, model (the bundled one) and fresh SQLite log each time; only ``--batch`` differs:
1 (each photo judged alone) and the default 16 (photos arriving within 2 ms share one call).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load_test  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--single-seconds", type=float, default=10.0)
    ap.add_argument("--json")
    args = ap.parse_args()
    runs = {}
    for batch in (1, 16):
        runs[f"--batch {batch}"] = load_test.main(["--clients", str(args.clients), "--seconds", str(args.seconds),
                                                   "--single-seconds", str(args.single_seconds), "--batch", str(batch)])
    from castinspect.core.provenance import provenance

    out = {"provenance": provenance(), "batching": runs,
           "ratio_16_clients": runs["--batch 16"][f"{args.clients}_clients"]["requests_per_s"]
           / runs["--batch 1"][f"{args.clients}_clients"]["requests_per_s"]}
    print(json.dumps({"ratio_16_clients": out["ratio_16_clients"]}))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
