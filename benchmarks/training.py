"""Training: time to a hold-out AUC, Falaj's paths against the ones a user would write.

    python -m benchmarks.training [--quick] [--rows N] [--only TEXT] [--threads N]
                                  [--epochs N] [--repeat N] [--out DIR]

Synthetic data with a real signal: 20 raw columns (14 numeric, 4 with 10% nulls; 5
categorical of cardinality 5, 20, 50, 500 and 5,000, skewed, 2% nulls; one datetime),
a binary label drawn from a logistic model of them (linear terms, category effects,
a month-of-year season, one interaction and one square, which trees can find and a
linear model cannot). 80% of the rows train, 20% are the hold-out, every engine the
same rows. Each engine starts from the raw columns (numbers, text, timestamps) and its
time is fit + transform of the hold-out + predict, to the hold-out ROC AUC:

- falaj linear: ``Pipeline.fit_transform`` (imputation with indicators, one-hot / target /
  hashing by cardinality, date parts, scaling) + the linear family (Newton);
- scikit-learn logistic: ``ColumnTransformer`` (SimpleImputer(add_indicator) +
  StandardScaler; OneHotEncoder(handle_unknown="ignore") up to 50 categories,
  TargetEncoder beyond; date parts by a FunctionTransformer) + LogisticRegression (lbfgs,
  default tol and C; ``max_iter`` raised until it converges, as its warning asks);
- falaj gbt: the same pipeline + the gbt family (LightGBM through ``lgb.train``): at
  LightGBM's own round count and learning rate (100, 0.1); then, at that rate, with the
  fewest rounds whose hold-out AUC reaches LightGBM direct's (found on the first fit's
  trees, then fitted and timed anew): the time to the same AUC; and at the family's
  defaults;
- LightGBM direct: ``lgb.train`` with its defaults on a DataFrame, categoricals as pandas
  ``category`` (the conversion is timed), date parts as numbers, ``num_threads`` set;
- scikit-learn HistGradientBoostingClassifier at its defaults: native categoricals up to
  50 categories (OrdinalEncoder), TargetEncoder beyond (its limit is 255), date parts.

The MLP: epoch throughput on the CPU (rows/s; the family's own ``stats_`` beside) on the
pipeline's matrix, against scikit-learn's MLPClassifier with the same layers, batch size,
optimiser and epochs; hold-out AUCs beside.

Every engine runs on ``--threads`` threads (BLAS, OpenMP, Arrow, Numba, LightGBM,
PyTorch). With the default, one, the ratios are of process CPU seconds, which other work on
the machine changes far less than wall seconds (on a busy 2-core box, OpenMP threads that
wait on each other at every barrier make LightGBM's wall time 10x longer); with more
threads, of wall seconds. The engines the targets compare run ``--repeat`` times,
interleaved, and the best run counts (a busy sibling hyperthread slows even CPU seconds).
Imports and our Numba kernels are warmed first.

Targets (issue 8, at 1M rows): the logistic path at least 2x faster than scikit-learn at
equal AUC (within 0.005); the tree path no slower to LightGBM direct's AUC than LightGBM
direct. The engines must agree: each Falaj path's
AUC within 0.02 of its rival's, or the run fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import _harness

N_NUMERIC = 14
WITH_NULLS = (1, 4, 7, 10)  # numeric inputs with 10% missing values
CARDINALITY = {"c5": 5, "c20": 20, "c50": 50, "c500": 500, "c5000": 5000}
ONE_HOT_UP_TO = 50  # scikit-learn pipelines: one-hot (or native) up to this, target beyond
EQUAL_AUC = 0.005  # "equal AUC" in the targets
AGREE_AUC = 0.02  # beyond this an engine's AUC disagrees: a bug, the run fails
TARGET_LINEAR = 2.0  # the logistic path's speed-up over scikit-learn
TARGET_TREES = 1.0  # the tree path's over LightGBM direct ("no slower")


# -- data ---------------------------------------------------------------------------


def generate(n: int, seed: int = 11) -> dict[str, Any]:
    """Columns (the pipeline's contract), the label and the train/hold-out split."""
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {}
    logit = np.full(n, -0.4)
    for j in range(N_NUMERIC):
        x = rng.normal(rng.normal(0, 3), rng.uniform(0.5, 20), n)
        z = (x - x.mean()) / x.std()
        logit += rng.normal(0, 0.35) * z
        if j == 0:
            z0 = z
        elif j == 2:
            logit += 0.5 * z0 * z  # an interaction, for the trees
        elif j == 3:
            logit += 0.3 * (z**2 - 1)  # a square, likewise
        if j in WITH_NULLS:
            x[rng.random(n) < 0.10] = np.nan
        columns[f"x{j}"] = x
    for name, k in CARDINALITY.items():
        share = 1.0 / np.arange(1, k + 1) ** 0.9  # skewed: a few common, a long tail
        codes = rng.choice(k, n, p=share / share.sum())
        logit += rng.normal(0, 0.6, k)[codes]
        text = np.array([f"{name}_{c}" for c in range(k)] + [None], dtype=object)
        codes[rng.random(n) < 0.02] = k  # missing
        columns[name] = text[codes]
    start = np.datetime64("2022-01-01T00:00:00", "us").astype(np.int64)
    opened = start + rng.integers(0, 3 * 365 * 86_400, n) * 1_000_000
    month = opened.astype("datetime64[us]").astype("datetime64[M]").astype(np.int64) % 12
    logit += 0.4 * np.sin(2 * np.pi * month / 12)
    columns["opened"] = opened.astype("datetime64[us]")
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    cut = int(n * 0.8)
    train = {k: v[:cut] for k, v in columns.items()}
    hold = {k: v[cut:] for k, v in columns.items()}
    return {"train": train, "hold": hold, "y": y[:cut], "y_hold": y[cut:]}


def inputs() -> list:
    from appliance.training.pipeline import Input

    out = [Input(f"x{j}", "numeric") for j in range(N_NUMERIC)]
    out += [Input(name, "categorical") for name in CARDINALITY]
    return out + [Input("opened", "datetime")]


def frames(data: dict[str, Any]) -> tuple[Any, Any]:
    """The same columns as pandas DataFrames (text as object, missing as None): the data as
    a scikit-learn or LightGBM user holds it. Not timed."""
    import pandas as pd

    return pd.DataFrame(data["train"]), pd.DataFrame(data["hold"])


def date_parts(df: Any) -> Any:
    """Date parts of the ``opened`` column, as a pandas user writes them."""
    import pandas as pd

    t = df["opened"].dt
    return pd.DataFrame({"year": t.year, "month": t.month, "day": t.day,
                         "weekday": t.day_of_week, "hour": t.hour,
                         "day_of_year": t.day_of_year}, index=df.index).astype(float)  # fmt: skip


def _folds():
    from sklearn.model_selection import KFold

    return KFold(5, shuffle=True, random_state=0)  # TargetEncoder's cross-fitting, seeded


# -- the engines: each returns (hold-out predictions, facts) ---------------------------


def falaj(data: dict[str, Any], family: str, **params: Any) -> tuple[np.ndarray, dict]:
    from appliance.training import families
    from appliance.training.pipeline import Pipeline

    t0 = time.perf_counter()
    pipe, X = Pipeline.fit_transform(data["train"], inputs(), data["y"], seed=0)
    t1 = time.perf_counter()
    est = families.get(family)("binary", **params).fit(X, data["y"], seed=0)
    t2 = time.perf_counter()
    p = est.predict(pipe.transform(data["hold"]))
    t3 = time.perf_counter()
    facts = {"pipeline_s": t1 - t0, "fit_s": t2 - t1, "predict_s": t3 - t2,
             "features": X.shape[1]}  # fmt: skip
    if family == "linear":
        facts["newton_iterations"] = est.model_.n_iter_
    if family == "gbt":
        facts["rounds"] = est.best_iteration_
    data["fitted"] = (pipe, est)
    return p, facts


def sklearn_logistic(data: dict[str, Any]) -> tuple[np.ndarray, dict]:
    from sklearn.compose import ColumnTransformer
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import (
        FunctionTransformer,
        OneHotEncoder,
        StandardScaler,
        TargetEncoder,
    )

    train, hold = data["frames"]
    low = [c for c, k in CARDINALITY.items() if k <= ONE_HOT_UP_TO]
    high = [c for c, k in CARDINALITY.items() if k > ONE_HOT_UP_TO]
    numeric = [f"x{j}" for j in range(N_NUMERIC)]
    prep = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(add_indicator=True), StandardScaler()), numeric),
        ("onehot", OneHotEncoder(handle_unknown="ignore"), low),
        ("target", make_pipeline(TargetEncoder(cv=_folds()), StandardScaler()), high),
        ("date", make_pipeline(FunctionTransformer(date_parts), SimpleImputer(),
                               StandardScaler()), ["opened"]),
    ])  # fmt: skip
    max_iter = 100  # the default; raised, as the ConvergenceWarning asks, until it converges
    while True:
        t0 = time.perf_counter()
        model = make_pipeline(prep, LogisticRegression(max_iter=max_iter))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(train, data["y"])
        if not any(issubclass(w.category, ConvergenceWarning) for w in caught):
            break
        max_iter *= 4
    t1 = time.perf_counter()
    p = model.predict_proba(hold)[:, 1]
    t2 = time.perf_counter()
    lr = model[-1]
    return p, {"fit_s": t1 - t0, "predict_s": t2 - t1, "max_iter": max_iter,
               "lbfgs_iterations": int(lr.n_iter_[0]),
               "features": int(lr.coef_.shape[1])}  # fmt: skip


def lightgbm_direct(data: dict[str, Any]) -> tuple[np.ndarray, dict]:
    import lightgbm as lgb

    train, hold = data["frames"]
    t0 = time.perf_counter()

    def frame(df):
        out = df.drop(columns=["opened"])
        for c in CARDINALITY:
            out[c] = out[c].astype("category")
        return out.join(date_parts(df))

    X = frame(train)
    params = {"objective": "binary", "verbose": -1, "num_threads": data["threads"]}
    booster = lgb.train(params, lgb.Dataset(X, data["y"]))
    t1 = time.perf_counter()
    p = booster.predict(frame(hold))  # categories mapped to training's by LightGBM
    t2 = time.perf_counter()
    return p, {"fit_s": t1 - t0, "predict_s": t2 - t1, "rounds": booster.current_iteration()}


def sklearn_hgb(data: dict[str, Any]) -> tuple[np.ndarray, dict]:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder, TargetEncoder

    train, hold = data["frames"]
    low = [c for c, k in CARDINALITY.items() if k <= ONE_HOT_UP_TO]
    high = [c for c, k in CARDINALITY.items() if k > ONE_HOT_UP_TO]
    numeric = [f"x{j}" for j in range(N_NUMERIC)]
    ordinal = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                             encoded_missing_value=np.nan)  # fmt: skip
    prep = ColumnTransformer([
        ("cat", ordinal, low),  # first: the native categorical columns are 0..len(low)-1
        ("target", TargetEncoder(cv=_folds()), high),
        ("num", "passthrough", numeric),
        ("date", FunctionTransformer(date_parts), ["opened"]),
    ])  # fmt: skip
    native = [True] * len(low) + [False] * (len(high) + len(numeric) + 6)
    t0 = time.perf_counter()
    model = make_pipeline(
        prep, HistGradientBoostingClassifier(categorical_features=native, random_state=0)
    )
    model.fit(train, data["y"])
    t1 = time.perf_counter()
    p = model.predict_proba(hold)[:, 1]
    t2 = time.perf_counter()
    return p, {"fit_s": t1 - t0, "predict_s": t2 - t1, "rounds": int(model[-1].n_iter_)}


GBT_100 = "falaj gbt (100 rounds, lr 0.1)"
LIGHTGBM = "LightGBM lgb.train defaults"
GBT_SAME_AUC = "falaj gbt (rounds to LightGBM's AUC)"
ENGINES: dict[str, tuple[str, Callable[[dict], tuple[np.ndarray, dict]]]] = {
    # name -> (group, run)
    "falaj linear": ("logistic", lambda d: falaj(d, "linear")),
    "scikit-learn LogisticRegression": ("logistic", sklearn_logistic),
    GBT_100: ("trees", lambda d: falaj(d, "gbt", n_estimators=100, learning_rate=0.1)),
    LIGHTGBM: ("trees", lightgbm_direct),
    "falaj gbt (family defaults)": ("trees", lambda d: falaj(d, "gbt")),
    "scikit-learn HistGradientBoosting": ("trees", sklearn_hgb),
}


# -- MLP epoch throughput ------------------------------------------------------------


def mlp(data: dict[str, Any], epochs: int) -> dict[str, Any]:
    """Our MLP family's epochs against MLPClassifier's, on the pipeline's matrix."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from appliance.training import families
    from appliance.training.pipeline import Pipeline
    from kernels.stats import roc_auc

    pipe, X = Pipeline.fit_transform(data["train"], inputs(), data["y"], seed=0)
    Xh = pipe.transform(data["hold"])
    n = X.shape[0]
    params = {"hidden": [64, 32], "batch_size": 256, "lr": 1e-3, "weight_decay": 1e-4}
    with Clock() as clock:
        est = families.get("mlp")("binary", epochs=epochs, **params).fit(X, data["y"], seed=0)
    ours = {**clock.seconds, "epochs": est.stats_["epochs"],
            "stats_rows_per_s": est.stats_["rows_per_s"],
            "auc": roc_auc(data["y_hold"], est.predict(Xh))}  # fmt: skip
    sk = MLPClassifier((64, 32), batch_size=256, learning_rate_init=1e-3, alpha=1e-4,
                       max_iter=epochs, random_state=0, tol=0.0)  # fmt: skip
    with warnings.catch_warnings(), Clock() as clock:
        warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed epoch count, on purpose
        sk.fit(X, data["y"])
    theirs = {**clock.seconds, "epochs": sk.n_iter_,
              "auc": roc_auc(data["y_hold"], sk.predict_proba(Xh)[:, 1])}  # fmt: skip
    for r in (ours, theirs):
        r["rows_per_s"] = n * r["epochs"] / r[data["clock"]]
    ours["speedup"] = ours["rows_per_s"] / theirs["rows_per_s"]
    return {"rows": n, "features": X.shape[1], "layers": params["hidden"],
            "batch_size": params["batch_size"], "device": est.stats_["device"],
            "falaj mlp": ours, "scikit-learn MLPClassifier": theirs}  # fmt: skip


# -- running and reporting -----------------------------------------------------------


class Clock:
    """Wall and process CPU seconds of a block (``seconds`` once it ends)."""

    def __enter__(self) -> Clock:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = {"wall_s": time.perf_counter() - self._wall,
                        "cpu_s": time.process_time() - self._cpu}  # fmt: skip


def warm(n: int, engines: list[str], mlp_too: bool) -> None:
    """Import the libraries and load our Numba kernels (from their disk cache) before
    anything is timed: every engine once on a few rows, and our pipeline again on ``n``
    rows, so that the same serial or parallel kernels load as in the timed runs."""
    small = generate(3_000, seed=1)
    small["frames"], small["threads"], small["clock"] = frames(small), 1, "cpu_s"
    for name in engines:
        ENGINES[name][1](small)
    if mlp_too:
        mlp(small, 1)
    falaj(generate(n, seed=1), "linear")


def measure(data: dict[str, Any], engines: list[str], repeat: int) -> dict[str, dict]:
    results: dict[str, dict[str, Any]] = {}
    fitted: dict[str, tuple] = {}
    runs = {name: ENGINES[name] for name in engines}
    for name in engines:
        _time(name, *runs[name], data, results)
        fitted[name] = data.pop("fitted", None)
    if GBT_100 in results and LIGHTGBM in results:
        # time to the same AUC: as many rounds as ours needs to reach LightGBM's, timed anew
        rounds = rounds_to(data, fitted[GBT_100], results[LIGHTGBM]["auc"])

        def same_auc(d: dict) -> tuple[np.ndarray, dict]:
            return falaj(d, "gbt", n_estimators=rounds, learning_rate=0.1)

        runs[GBT_SAME_AUC] = ("trees", same_auc)
        _time(GBT_SAME_AUC, *runs[GBT_SAME_AUC], data, results)
    # the targets' engines again, interleaved, the best run kept: other work on the machine
    # (a busy sibling hyperthread) slows a run, CPU seconds included
    again = [name for pair in PAIRS for name in pair[:2] if name in results]
    for _ in range(repeat - 1):
        for name in again:
            _time(name, *runs[name], data, results)
    data.pop("fitted", None)
    order = [*ENGINES]
    order.insert(order.index(LIGHTGBM) + 1, GBT_SAME_AUC)
    return {name: results[name] for name in order if name in results}


def _time(name: str, group: str, run: Callable, data: dict, results: dict) -> None:
    """Run an engine; keep its result if it is the fastest yet."""
    from kernels.stats import roc_auc

    with Clock() as clock:
        p, facts = run(data)
    took = clock.seconds
    print(f"  {name}: {took['cpu_s']:.1f} s CPU, {took['wall_s']:.1f} s wall",
          file=sys.stderr, flush=True)  # fmt: skip
    best = results.get(name)
    if best is None or took[data["clock"]] < best[data["clock"]]:
        results[name] = {"group": group, **took, "auc": roc_auc(data["y_hold"], p), **facts}


def rounds_to(data: dict, fitted: tuple, auc: float) -> int:
    """The fewest boosting rounds of a fitted gbt whose hold-out AUC reaches ``auc``, by
    bisection (AUC all but always rises with rounds); all of them when none does."""
    from kernels.stats import roc_auc

    pipe, est = fitted
    X = pipe.transform(data["hold"])
    lo, hi = 1, est.best_iteration_
    while lo < hi:
        mid = (lo + hi) // 2
        p = est.booster_.predict(X, num_iteration=mid)
        lo, hi = (lo, mid) if roc_auc(data["y_hold"], p) >= auc else (mid + 1, hi)
    return lo


PAIRS = [  # (ours, the rival of the target, the speed-up needed)
    ("falaj linear", "scikit-learn LogisticRegression", TARGET_LINEAR),
    (GBT_SAME_AUC, LIGHTGBM, TARGET_TREES),
]


def compare(results: dict[str, dict], clock: str) -> tuple[list[str], list[str]]:
    """(targets missed, disagreements) for the issue's two targets."""
    missed, disagree = [], []
    for ours, rival, needed in PAIRS:
        if ours not in results or rival not in results:
            continue
        a, b = results[ours], results[rival]
        speedup = b[clock] / a[clock]
        gap = a["auc"] - b["auc"]
        a["target"] = {"rival": rival, "speedup": speedup, "needed": needed, "auc_gap": gap}
        if speedup < needed:
            missed.append(f"{ours}: {speedup:.2f}x as fast as {rival}, needs {needed:g}x")
        if gap < -EQUAL_AUC:
            missed.append(f"{ours}: AUC {gap:+.4f} against {rival}, needs >= -{EQUAL_AUC}")
        if abs(gap) > AGREE_AUC:
            disagree.append(f"{ours}: AUC {a['auc']:.4f}, {rival} {b['auc']:.4f}")
    return missed, disagree


def report(doc: dict[str, Any]) -> None:
    n, results, m, clock = doc["rows"], doc["results"], doc["mlp"], doc["clock"]
    print(f"{n:,} rows x 20 columns, {int(n * 0.8):,} train / {n - int(n * 0.8):,} hold-out, "
          f"{doc['threads']} thread(s) per engine; ratios on {clock[:-2]} seconds")  # fmt: skip
    print(f"{'engine':<38} {'cpu s':>7} {'wall s':>7} {'AUC':>7} {'time/ours':>9}  breakdown")
    ours_of = {"logistic": "falaj linear", "trees": GBT_SAME_AUC}
    for name, r in results.items():
        base = results.get(ours_of[r["group"]], r)
        parts = ", ".join(f"{k[:-2]} {v:.2f}s" for k, v in r.items()
                          if k.endswith("_s") and k not in ("wall_s", "cpu_s"))  # fmt: skip
        extra = ", ".join(f"{k} {v}" for k, v in r.items()
                          if k in ("features", "rounds", "newton_iterations", "lbfgs_iterations",
                                   "max_iter"))  # fmt: skip
        print(f"{name:<38} {r['cpu_s']:>7.2f} {r['wall_s']:>7.2f} {r['auc']:>7.4f} "
              f"{r[clock] / base[clock]:>8.2f}x  {parts}; {extra}")  # fmt: skip
    if m:
        print(f"MLP epochs, {m['rows']:,} rows x {m['features']} features, layers "
              f"{m['layers']}, batch {m['batch_size']}, on the {m['device']}:")  # fmt: skip
        for name in ("falaj mlp", "scikit-learn MLPClassifier"):
            r = m[name]
            print(f"  {name:<32} {r['rows_per_s']:>9,.0f} rows/s  {r[clock] / r['epochs']:>6.2f}"
                  f" s/epoch  {r['epochs']} epochs  AUC {r['auc']:.4f}")  # fmt: skip
        print(f"  falaj mlp: {m['falaj mlp']['speedup']:.2f}x MLPClassifier's rows/s "
              f"(its own stats_: {m['falaj mlp']['stats_rows_per_s']:,.0f} rows/s wall)")  # fmt: skip
    for r in results.values():
        t = r.get("target")
        if t:
            print(f"target: {t['speedup']:.2f}x as fast as {t['rival']} (needs {t['needed']:g}x), "
                  f"AUC {t['auc_gap']:+.4f}")  # fmt: skip
    for line in doc["targets_missed"]:
        print("target missed:", line)
    for line in doc["disagreements"]:
        print("DISAGREE:", line)


def _load_libraries() -> None:
    """Import what loads BLAS and OpenMP libraries, so threadpool_limits finds them all."""
    import lightgbm  # noqa: F401
    import scipy.optimize  # noqa: F401
    import sklearn.ensemble  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import sklearn.neural_network  # noqa: F401
    import torch  # noqa: F401


def _code() -> str:
    """The commit measured, "+" when the working tree differs from it."""
    try:
        run = {"capture_output": True, "text": True, "cwd": Path(__file__).parent, "timeout": 10}
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], **run).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "appliance", "kernels"], **run)
        return head + ("+" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.training", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--quick", action="store_true", help="50,000 rows, as a smoke test (make test)")
    p.add_argument("--rows", type=int, help="default 1,000,000 (quick 50,000)")
    p.add_argument("--only", help="run only the engines whose name contains one of these "
                   "comma-separated words (and no MLP), e.g. 'gbt,LightGBM'")  # fmt: skip
    p.add_argument("--threads", type=int, default=1,
                   help="threads per engine (default 1: CPU seconds then measure the work, "
                        "whatever else runs on the machine)")  # fmt: skip
    p.add_argument("--epochs", type=int, help="MLP epochs timed (default 3, quick 1)")
    p.add_argument("--repeat", type=int, help="runs of the engines the targets compare, the "
                   "best taken (default 2, quick 1); the others run once")  # fmt: skip
    p.add_argument("--out", type=Path, help="results folder")
    args = p.parse_args(argv)
    import numba
    import pyarrow as pa
    from threadpoolctl import threadpool_limits

    from appliance.training import families

    n = args.rows or (50_000 if args.quick else 1_000_000)
    repeat = args.repeat or (1 if args.quick else 2)
    words = args.only.split(",") if args.only else [""]
    # the family's defaults only add rounds to a path the quick pass runs
    skip = {"falaj gbt (family defaults)"} if args.quick else set()
    engines = [e for e in ENGINES if any(w in e for w in words) and e not in skip]
    families.set_threads(args.threads)  # LightGBM and PyTorch in our families
    numba.set_num_threads(args.threads)  # our kernels
    pa.set_cpu_count(args.threads)  # Arrow: ours, and pandas' Arrow-backed text columns
    _load_libraries()
    with threadpool_limits(args.threads):  # BLAS and OpenMP: scikit-learn, LightGBM
        warm(min(n, 100_000), engines, not args.only)
        data = generate(n)
        data["frames"], data["threads"] = frames(data), args.threads
        data["clock"] = clock = "cpu_s" if args.threads == 1 else "wall_s"
        results = measure(data, engines, repeat)
        m = {} if args.only else mlp(data, args.epochs or (1 if args.quick else 3))
    missed, disagree = compare(results, clock)
    if args.quick:
        missed = []  # the targets are for the full size; agreement is checked at any size
    meta = _harness.meta() | {"load_average": os.getloadavg(), "code": _code()}
    doc = {"meta": meta, "rows": n, "threads": args.threads, "repeat": repeat,
           "clock": clock, "results": results, "mlp": m, "targets_missed": missed,
           "disagreements": disagree}  # fmt: skip
    report(doc)
    partial = args.rows or args.only or args.epochs
    tag = "training-quick" if args.quick else ("training-partial" if partial else "training")
    path = _harness.results_dir(args.out) / f"{tag}.json"
    path.write_text(json.dumps(doc, indent=2, default=float))
    print(f"wrote {path}")
    return 1 if disagree else 0


if __name__ == "__main__":
    sys.exit(main())
