"""The benchmark runner: times our kernel and its rivals in the same run, prints ratios.

A benchmark module ``benchmarks/bench_*.py`` exposes ``cases(n_rows: int) -> list[Case]``.
Each case names our implementation and the alternatives a user would otherwise pick
(NumPy, Polars, DuckDB SQL, scikit-learn, SciPy); the runner warms each up once (so
Numba compilation is not timed), takes the best of ``repeat`` runs, and reports every
rival's time divided by ours (> 1 means we are faster).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


@dataclass
class Case:
    name: str  # e.g. "standard_scale"
    ours: Callable[[], Any]
    rivals: dict[str, Callable[[], Any]] = field(default_factory=dict)
    bytes_moved: int | None = None  # bytes read + written by one call, for GB/s
    target: str = ""  # the stated target, printed beside the result
    repeat: int = 3


def best_time(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm-up: JIT compilation and caches are not what we measure
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def discover() -> list[Any]:
    import benchmarks

    names = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))
    return [importlib.import_module(f"benchmarks.{n}") for n in names]


def run(sizes: list[int], repeat: int | None = None, only: str | None = None) -> list[dict[str, Any]]:
    rows = []
    for module in discover():
        for n in sizes:
            for case in module.cases(n):
                if only and only not in case.name:
                    continue
                r = repeat or case.repeat
                ours = best_time(case.ours, r)
                row: dict[str, Any] = {"kernel": case.name, "rows": n, "ours_s": ours, "target": case.target}
                if case.bytes_moved:
                    row["ours_GBps"] = case.bytes_moved / ours / 1e9
                row["rivals"] = {name: best_time(fn, r) for name, fn in case.rivals.items()}
                row["speedup"] = {name: t / ours for name, t in row["rivals"].items()}
                rows.append(row)
                print(format_row(row), flush=True)
    return rows


def format_row(row: dict[str, Any]) -> str:
    ratios = "  ".join(f"{k} x{v:.2f}" for k, v in row["speedup"].items())
    return f"{row['kernel']:<34} {row['rows']:>10,} {row['ours_s'] * 1e3:>10.2f} ms  {ratios}"


def write(rows: list[dict[str, Any]], tag: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{tag}.json"
    meta = {"python": platform.python_version(), "machine": platform.machine(), "time": time.time()}
    path.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    return path
