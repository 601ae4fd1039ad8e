#!/usr/bin/env bash
# The GPU check: the kernel tests on a real CUDA device, then the GPU benchmark cases.
#
#   OUT=/tmp/gpu-check bash benchmarks/gpu_check.sh        # from the repository root
#
# Needs an NVIDIA GPU, CuPy and the project's dependencies (pip install -e '.[dev,gpu]').
# Where no package registry can be reached, put wheels of what is missing in .whl/: they
# are installed to /tmp/site first. BUDGET_S (default 420) bounds the whole run; each step
# gets at most what is left, and the steps run most important first:
#
#   env.txt         the GPU, the CPU, package versions, a numba.cuda smoke test and how
#                   the shared quantile formula compiles there (fused multiply-add or not)
#   tests-gpu.txt   pytest -m gpu tests/kernels (CuPy data end to end)
#   tests-cuda.txt  the cuda-backend tests, on the device instead of the simulator
#   bench.txt       python -m benchmarks --only cuda: GPU cases, GB/s against the measured
#   gpu.json        device copy bandwidth, and the rivals (CuPy, our CPU path)
#   tests-rest.txt  the remaining kernel tests (the CPU paths on this machine's CPU)
#
# tests/conftest.py needs the whole appliance stack, so pytest reads only tests/kernels'
# conftest (--confcutdir); without NUMBA_ENABLE_CUDASIM the cuda backend is the device.
# The H200 run's results: benchmarks/results/gpu-h200.txt (what ran, what it showed) and
# gpu-h200.json (the benchmark rows).
set -u
OUT=${OUT:-benchmarks/results/gpu-check}
PY=${PYTHON:-python3}
ROWS=${ROWS:-10000000}
mkdir -p "$OUT"
export OUT PY ROWS PYTHONUNBUFFERED=1
unset NUMBA_ENABLE_CUDASIM
deadline=$(($(date +%s) + ${BUDGET_S:-420}))

step() { # step NAME CAP_SECONDS COMMAND...: output to $OUT/NAME.txt, within the budget
    local name=$1 cap=$2 t t0 rc
    shift 2
    t=$((deadline - $(date +%s)))
    ((t > cap)) && t=$cap
    if ((t < 15)); then
        echo "== $name: skipped, out of time" | tee -a "$OUT/steps.txt"
        return
    fi
    echo "== $name (up to ${t}s): $*" | tee -a "$OUT/steps.txt"
    t0=$(date +%s)
    timeout -k 10 "$t" bash -c '"$@"' "$name" "$@" >"$OUT/$name.txt" 2>&1
    rc=$?
    echo "== $name: exit $rc after $(($(date +%s) - t0))s" | tee -a "$OUT/steps.txt"
    tail -n 3 "$OUT/$name.txt" | sed 's/^/   /'
}

if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

# numba-cuda up to 0.30 registers np.row_stack, which NumPy 2.5 removed, so its CUDA target
# compiles nothing there. Falaj pins numpy<2.5; where an image pairs the two anyway (the
# lent H200 machine's: numpy 2.5.2, numba-cuda 0.30.4), the alias is put back first.
if ! $PY -c "import numpy; numpy.row_stack" 2>/dev/null && $PY -c "import numba_cuda" 2>/dev/null; then
    mkdir -p /tmp/shim
    cat >/tmp/shim/sitecustomize.py <<'EOF'
import os
import sys

import numpy

numpy.row_stack = numpy.vstack
for _dir in sys.path:  # then the sitecustomize this one shadows, if any
    _file = os.path.join(_dir, "sitecustomize.py")
    if _dir and os.path.abspath(_dir) != os.path.dirname(__file__) and os.path.exists(_file):
        exec(compile(open(_file).read(), _file, "exec"))
        break
EOF
    export PYTHONPATH=/tmp/shim${PYTHONPATH:+:$PYTHONPATH}
    echo "numpy.row_stack restored for numba-cuda (numpy>=2.5)" | tee -a "$OUT/steps.txt"
fi

probe() {
    nvidia-smi
    lscpu | grep -E "^(Model name|CPU\(s\)):"
    $PY - <<'EOF'
import importlib
import platform

import numpy as np

print("python", platform.python_version())
for name in ("numpy", "numba", "numba_cuda", "llvmlite", "cupy", "scipy", "sklearn",
             "hypothesis", "pytest", "xdist", "polars", "duckdb"):
    try:
        print(name, getattr(importlib.import_module(name), "__version__", "?"))
    except Exception as exc:  # noqa: BLE001
        print(name, "MISSING:", exc)

from numba import cuda

print("numba.cuda available:", cuda.is_available())
dev = cuda.get_current_device()
print("device:", dev.name, "compute capability", dev.compute_capability)
from kernels._backend import gpu_available

print("kernels gpu_available:", gpu_available())

# the shared interpolation formula, compiled for the device, against NumPy's np.quantile
from kernels.stats import cuda as stats_cuda

rng = np.random.default_rng(0)
s = np.sort(rng.normal(size=1001) * 1e3)
q = rng.random(100_000)
got = np.empty(q.size)
stats_cuda._interp_kernel[(q.size + 255) // 256, 256](s, q, got)
want = np.quantile(s, q)
ulps = np.abs(got - want) / np.spacing(np.abs(want))
print(f"quantile formula on the device vs np.quantile: {np.mean(got != want):.2%} differ, "
      f"at most {ulps.max():.1f} ulp (fused multiply-add where > 0)")
EOF
}
export -f probe
step env 60 probe

PYTEST=($PY -m pytest -p no:cacheprovider -p no:benchmark --confcutdir=tests/kernels -q)
PYTEST+=(--hypothesis-seed=0)
$PY -c "import pytest_timeout" 2>/dev/null && PYTEST+=(--timeout=120) # a hung test, not the step
PARALLEL=()
$PY -c "import xdist" 2>/dev/null && PARALLEL=(-n 8) # pytest-xdist: compile on 8 cores
step tests-gpu 100 "${PYTEST[@]}" -m gpu tests/kernels
step tests-cuda 200 "${PYTEST[@]}" "${PARALLEL[@]}" -k "cuda or gpu" tests/kernels

bench() {
    $PY -m benchmarks --rows "$ROWS" --only cuda && cp benchmarks/results/partial.json "$OUT/gpu.json"
}
export -f bench
step bench 200 bench

step tests-rest 600 "${PYTEST[@]}" "${PARALLEL[@]}" -k "not cuda and not gpu" tests/kernels
