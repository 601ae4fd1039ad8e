"""python -m benchmarks [--quick] [--rows N ...] [--only NAME]

Example: python -m benchmarks --rows 1000000 --only drift
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks import _harness


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true", help="a small smoke pass (used by make test)")
    p.add_argument("--rows", type=int, nargs="*", help="row counts (default 1M and 10M)")
    p.add_argument("--only", help="run only kernels whose name contains this")
    p.add_argument(
        "--out", type=Path, help="results folder (default: benchmarks/results in a source "
        "checkout, else ./benchmark-results)",
    )  # fmt: skip
    args = p.parse_args(argv)
    sizes = args.rows or ([10_000] if args.quick else [1_000_000, 10_000_000])
    print(f"{'kernel':<34} {'rows':>10} {'ours':>13}  rival time / our time (>1: we are faster)")
    rows = _harness.run(sizes, repeat=1 if args.quick else None, only=args.only)
    # only a full default run replaces latest.json, the committed record
    tag = "quick" if args.quick else ("partial" if args.only or args.rows else "latest")
    path = _harness.write(rows, tag, args.out)
    missed = [r["kernel"] for r in rows if r.get("missed")]
    if missed:
        print(f"targets missed: {', '.join(missed)}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
