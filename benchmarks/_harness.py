"""The benchmark runner: times our kernel and its rivals in the same run, prints ratios.

A benchmark module ``benchmarks/bench_*.py`` exposes ``cases(n_rows: int) -> list[Case]``.
Each case names our implementation and the alternatives a user would otherwise pick
(NumPy, Polars, DuckDB SQL, scikit-learn, SciPy); the runner warms each up once (so
Numba compilation is not timed), takes the best of ``repeat`` runs, and reports every
rival's time divided by ours (> 1 means we are faster).

Targets: ``target_s`` (our time must not exceed it) and ``target_vs`` (rival -> the
speed-up over it we must reach: 1.0 is "no slower", 2.0 "twice as fast") are checked
and a missed one is marked; ``target`` is the text printed beside the result. A case that moves ``bytes_moved`` bytes also reports GB/s,
and, once ``bench_copy`` has measured the copy bandwidth of its device, the fraction of
it achieved: the ceiling for a memory-bound kernel.

Data is built inside ``cases`` once per module and row count and shared by its cases;
the runner drops it before the next size, so a 10M-row run holds one data set at a time.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import pkgutil
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"  # the committed record, in a source checkout


def results_dir(out: Path | None = None) -> Path:
    """Where results go: ``out`` if given; in a source checkout the committed
    ``benchmarks/results``; from an installed package ``./benchmark-results``, never
    inside site-packages."""
    if out is None:
        checkout = (Path(__file__).parent.parent / "pyproject.toml").exists()
        out = RESULTS if checkout else Path.cwd() / "benchmark-results"
    out.mkdir(parents=True, exist_ok=True)
    return out


def meta() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "time": time.time(),
    }


@dataclass
class Case:
    name: str  # e.g. "standard_scale"
    ours: Callable[[], Any]
    rivals: dict[str, Callable[[], Any]] = field(default_factory=dict)
    bytes_moved: int | None = None  # bytes read + written by one call, for GB/s
    target: str = ""  # the stated target, printed beside the result
    repeat: int = 3
    target_s: float | None = None  # missed when our time is above this
    target_vs: dict[str, float] | None = None  # rival -> required speed-up over it
    device: str = "cpu"  # "cpu" or "cuda": which copy bandwidth GB/s compares with
    copy_bandwidth: bool = False  # this case measures the device's copy bandwidth
    note: Callable[[], str] | None = None  # extra facts after timing, e.g. the AUC reached


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

    names = sorted(
        m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_")
    )
    # copy bandwidth first: other cases report a fraction of it
    names.sort(key=lambda n: n != "bench_copy")
    return [importlib.import_module(f"benchmarks.{n}") for n in names]


def run(
    sizes: list[int], repeat: int | None = None, only: str | None = None
) -> list[dict[str, Any]]:
    rows = []
    peak: dict[str, float] = {}  # device -> copy GB/s
    for module in discover():
        for n in sizes:
            cases = [c for c in module.cases(n) if not only or only in c.name or c.copy_bandwidth]
            for case in cases:
                row = measure(case, n, repeat, peak)
                rows.append(row)
                print(format_row(row), flush=True)
            del cases
            gc.collect()
    return rows


def measure(case: Case, n: int, repeat: int | None, peak: dict[str, float]) -> dict[str, Any]:
    r = repeat or case.repeat
    ours = best_time(case.ours, r)
    row: dict[str, Any] = {"kernel": case.name, "rows": n, "device": case.device, "ours_s": ours}
    row["target"] = case.target
    if case.bytes_moved:
        row["ours_GBps"] = case.bytes_moved / ours / 1e9
        if case.copy_bandwidth:
            peak[case.device] = max(peak.get(case.device, 0.0), row["ours_GBps"])
        elif case.device in peak:
            row["fraction_of_copy"] = row["ours_GBps"] / peak[case.device]
    row["rivals"] = {name: best_time(fn, r) for name, fn in case.rivals.items()}
    row["speedup"] = {name: t / ours for name, t in row["rivals"].items()}
    missed = []
    if case.target_s is not None and ours > case.target_s:
        missed.append(f"{ours:.3g}s > {case.target_s:g}s")
    for rival, required in (case.target_vs or {}).items():
        got = row["speedup"].get(rival, float("inf"))
        if got < required:
            missed.append(f"x{got:.2f} vs {rival}, needs x{required:g}")
    row["missed"] = missed
    if case.note:
        row["note"] = case.note()
    return row


def format_row(row: dict[str, Any]) -> str:
    ratios = "  ".join(f"{k} x{v:.2f}" for k, v in row["speedup"].items())
    bw = ""
    if "ours_GBps" in row:
        bw = f"  {row['ours_GBps']:.1f} GB/s"
        if "fraction_of_copy" in row:
            bw += f" ({row['fraction_of_copy']:.0%} of copy)"
    target = ""
    if row.get("target"):
        target = (
            f"  [target: {row['target']}"
            + (" MISSED: " + "; ".join(row["missed"]) if row["missed"] else " ok")
            + "]"
        )
    note = f"  ({row['note']})" if row.get("note") else ""
    return f"{row['kernel']:<34} {row['rows']:>10,} {row['ours_s'] * 1e3:>10.2f} ms  {ratios}{bw}{target}{note}"


def write(rows: list[dict[str, Any]], tag: str, out: Path | None = None) -> Path:
    path = results_dir(out) / f"{tag}.json"
    path.write_text(json.dumps({"meta": meta(), "results": rows}, indent=2))
    return path
