"""ONNX export of a model version: its fitted pipeline and estimator as one graph that
takes the raw columns, so a consumer needs nothing of Falaj to score.

Conventions of the exported graph (also in its ``doc_string``):

- one input per model input, named as the column, shape ``[N, 1]``:
  numeric ``tensor(double)``, NaN (or ±inf) missing;
  categorical ``tensor(string)``, the empty string ``""`` missing (a model whose
  training rows held ``""`` as a category is refused, as ONNX strings have no null);
  datetime ``tensor(int64)``, UTC microseconds since the Unix epoch, ``INT64_MIN``
  (NumPy's ``NaT`` viewed as int64) missing.
- one output, ``probability`` (binary: P(y = 1)) or ``prediction`` (regression),
  ``tensor(double)`` of shape ``[N]``.

Pipeline steps become ai.onnx / ai.onnx.ml ops: mean imputation and missing indicators
(IsNaN, Where, Gather), standard scaling and its clip (Sub, Div, Clip); a one-hot or
target + frequency encoded column is a LabelEncoder from text to a row of a table of that
step's own outputs (one row per training category, a last one for unseen and missing),
computed by the pipeline itself, so the values are the served ones bit for bit; date parts
are integer arithmetic on the epoch (Howard Hinnant's civil-from-days). Hashed columns have
no ONNX form (ONNX cannot hash text), so they are refused. Linear models are MatMul + Add
(+ Sigmoid) in double; LightGBM trees are converted by onnxmltools and run in float32
(ONNX's TreeEnsemble), so they agree with native predictions to float32 precision
(about 1e-7 relative; a value within a float32 step of a split threshold may go the other
way).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from appliance.errors import BadInput
from appliance.files import publish
from appliance.training.pipeline import CLIP, NAT, Pipeline
from kernels.transforms import DATETIME_PARTS

OPSET = 17  # ai.onnx
ML_OPSET = 2  # ai.onnx.ml: LabelEncoder-2 (string -> int64 with keys/values)
GBT_OPSET = 15  # the highest onnxmltools 1.16 converts LightGBM to
_DOUBLE, _INT64 = TensorProto.DOUBLE, TensorProto.INT64
_ELEM = {"numeric": TensorProto.DOUBLE, "categorical": TensorProto.STRING, "datetime": _INT64}
_DAY_US, _HOUR_US = 86_400_000_000, 3_600_000_000
_PARTS = ("year", "month", "day", "weekday", "hour", "day_of_year")

CONVENTIONS = (
    "Inputs: one per model input, shape [N, 1]. numeric: double, NaN missing. "
    'categorical: string, "" missing. datetime: int64 UTC microseconds since 1970-01-01, '
    "INT64_MIN missing. Output: {output}, double [N]."
)


def export(model: Any, out: Path) -> dict[str, Any]:
    """Write ``model`` (a registry ``Model``) as ONNX to ``out``, atomically.

    Returns ``{"path", "bytes", "sha256", "inputs", "output", "opset"}``; BadInput names
    what has no ONNX form (an MLP, a hashed column, a legacy bundle).
    """
    out = Path(out)
    proto = build(model)
    data = proto.SerializeToString()
    _publish(out, data)
    return {
        "path": str(out),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "inputs": [i.name for i in model.inputs],
        "output": model.output_name,
        "opset": {o.domain or "ai.onnx": o.version for o in proto.opset_import},
    }


def build(model: Any) -> onnx.ModelProto:
    """The checked ONNX model of a registry ``Model``."""
    where = f"{model.name}@{model.version}"
    family = getattr(model.estimator, "family", None)
    if family not in ("linear", "gbt"):
        raise BadInput(f"{where}: cannot export a {family} model to ONNX; "
                       "export covers linear and tree models")  # fmt: skip
    if not isinstance(model.pipeline, Pipeline):
        raise BadInput(f"{where}: its bundle predates fitted pipelines and has no ONNX "
                       "export; train a new version to export it")  # fmt: skip
    g = _Graph({i.name for i in model.inputs} | {model.output_name})
    X = _pipeline(g, model.pipeline, where)
    opsets = {"": OPSET, "ai.onnx.ml": ML_OPSET}
    if family == "linear":
        _linear(g, model.estimator, X, model.output_name)
    else:
        opsets = _trees(g, model.estimator, X, model.output_name, opsets)
    inputs = [helper.make_tensor_value_info(i.name, _ELEM[i.role], ["N", 1]) for i in model.inputs]
    output = helper.make_tensor_value_info(model.output_name, _DOUBLE, ["N"])
    graph = helper.make_graph(g.nodes, f"falaj_{model.name}_v{model.version}", inputs,
                              [output], g.inits)  # fmt: skip
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
        producer_name="falaj",
        model_version=int(model.version),
        doc_string=CONVENTIONS.format(output=model.output_name),
    )
    proto.ir_version = min(proto.ir_version, 8)  # opset 17's IR: newer ones shut out older runtimes
    helper.set_model_props(proto, {
        "falaj.model": where, "falaj.family": family, "falaj.task": model.task,
        "falaj.features": ",".join(model.pipeline.feature_names_),
    })  # fmt: skip
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:  # a bug here, not the user's input
        raise RuntimeError(f"{where}: the exported ONNX graph is invalid: {exc}") from exc
    return proto


class _Graph:
    """Nodes and initializers of the graph being built; names never clash with the
    inputs and output, which keep the columns' own names."""

    def __init__(self, reserved: set[str]) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._reserved, self._count = reserved, 0

    def name(self, hint: str) -> str:
        while True:
            self._count += 1
            name = f"falaj/{hint}_{self._count}"
            if name not in self._reserved:
                return name

    def const(self, value: Any, dtype: Any, hint: str = "const") -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def i64(self, value: Any) -> str:
        return self.const(value, np.int64, "int")

    def op(self, op_type: str, *inputs: str, out: str | None = None, domain: str = "",
           **attrs: Any) -> str:  # fmt: skip
        out = out or self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], domain=domain, **attrs))
        return out

    def concat(self, blocks: list[str]) -> str:
        return blocks[0] if len(blocks) == 1 else self.op("Concat", *blocks, axis=1)

    def columns(self, X: str, idx: Any) -> str:
        return self.op("Gather", X, self.i64(idx), axis=1)


# ---------------------------------------------------------------- the pipeline


def _pipeline(g: _Graph, pipeline: Pipeline, where: str) -> str:
    """The name of the pipeline's output matrix, double [N, len(feature_names_)]."""
    blocks = []
    for step in pipeline.steps:
        if step.kind == "numeric":
            blocks.append(_numeric(g, step))
        elif step.kind == "datetime":
            blocks.append(_datetime(g, step))
        elif step.kind in ("one_hot", "target"):
            blocks.append(_categorical(g, step, where))
        else:
            raise BadInput(
                f"{where}: input {step.column!r} has too many categories for target "
                f"encoding and is hashed; ONNX cannot hash text, so this model has no "
                "ONNX export (give the column the role 'ignore' and retrain to export)"
            )
    return g.concat(blocks)


def _numeric(g: _Graph, step: Any) -> str:
    X = g.concat(list(step.columns))
    missing = g.op("Or", g.op("IsNaN", X), g.op("IsInf", X))
    filled = g.op("Where", missing, g.const([step.imputer.statistics_], np.float64), X)
    z = g.op("Div", g.op("Sub", filled, g.const([step.scaler.mean_], np.float64)),
             g.const([step.scaler.scale_], np.float64))  # fmt: skip
    blocks = [g.op("Clip", z, g.const(-CLIP, np.float64), g.const(CLIP, np.float64))]
    if len(step.imputer.missing_features_):
        indicators = g.columns(missing, step.imputer.missing_features_)
        blocks.append(g.op("Cast", indicators, to=_DOUBLE))
    return g.concat(blocks)


def _categorical(g: _Graph, step: Any, where: str) -> str:
    """Text -> code (LabelEncoder) -> that code's row of the step's own outputs."""
    if step.kind == "one_hot":
        keys = step.encoder.categories_.tolist()
    else:
        keys = sorted(set(step.target.categories_.tolist())
                      | set(step.frequency.categories_.tolist()))  # fmt: skip
    if "" in keys:
        raise BadInput(
            f"{where}: input {step.column!r} has the empty string as a category, which the "
            'ONNX export reserves for a missing value; map "" to null and retrain to export'
        )
    # Rows: each category, then missing; unseen must encode as missing does.
    unseen = "~unseen"
    while unseen in keys:
        unseen += "~"
    values = np.array([*keys, None, unseen], dtype=object)
    table = step.transform({step.column: values})
    if not np.array_equal(table[-1], table[-2]):
        raise RuntimeError(f"{where}: {step.column!r} encodes unseen and missing differently")
    codes = g.op("LabelEncoder", step.column, domain="ai.onnx.ml", keys_strings=keys,
                 values_int64s=list(range(len(keys))), default_int64=len(keys))  # fmt: skip
    flat = g.op("Reshape", codes, g.i64([-1]))
    return g.op("Gather", g.const(table[:-1], np.float64, "table"), flat, axis=0)


def _floordiv(g: _Graph, x: str, d: int) -> tuple[str, str]:
    """(x // d, x % d) as Python computes them (Mod with fmod=0 takes the divisor's sign)."""
    rem = g.op("Mod", x, g.i64(d), fmod=0)
    return g.op("Div", g.op("Sub", x, rem), g.i64(d)), rem


def _date_parts(g: _Graph, us: str) -> str:
    """int64 [N, 6]: ``DATETIME_PARTS`` of epoch microseconds (proleptic Gregorian, UTC)."""

    def add(a: str, b: str | int) -> str:
        return g.op("Add", a, b if isinstance(b, str) else g.i64(b))

    def sub(a: str, b: str | int) -> str:
        return g.op("Sub", a, b if isinstance(b, str) else g.i64(b))

    def mul(a: str, b: int) -> str:
        return g.op("Mul", a, g.i64(b))

    def div(a: str, b: int) -> str:  # operands are non-negative here: truncation = floor
        return g.op("Div", a, g.i64(b))

    def mod(a: str, b: int) -> str:
        return g.op("Mod", a, g.i64(b), fmod=0)

    def is_zero(a: str) -> str:
        return g.op("Equal", a, g.i64(0))

    days, rem = _floordiv(g, us, _DAY_US)
    hour, weekday = div(rem, _HOUR_US), mod(add(days, 3), 7)  # 1970-01-01 was a Thursday
    era, doe = _floordiv(g, add(days, 719468), 146097)  # 400-year eras from 0000-03-01
    yoe = div(sub(add(sub(doe, div(doe, 1460)), div(doe, 36524)), div(doe, 146096)), 365)
    doy = sub(doe, sub(add(mul(yoe, 365), div(yoe, 4)), div(yoe, 100)))  # from March 1st
    mp = div(add(mul(doy, 5), 2), 153)
    day = add(sub(doy, div(add(mul(mp, 153), 2), 5)), 1)
    jan_feb = g.op("Greater", mp, g.i64(9))
    month = sub(add(mp, 3), mul(g.op("Cast", jan_feb, to=_INT64), 12))
    year = add(add(yoe, mul(era, 400)), g.op("Cast", jan_feb, to=_INT64))
    leap = g.op("Or", g.op("And", is_zero(mod(year, 4)), g.op("Not", is_zero(mod(year, 100)))),
                is_zero(mod(year, 400)))  # fmt: skip
    # March 1st is day 60 of a common year, 61 of a leap one; January 1st is doy 306
    after_feb = add(add(doy, 60), g.op("Cast", leap, to=_INT64))
    day_of_year = g.op("Where", jan_feb, sub(doy, 305), after_feb)
    return g.op("Concat", year, month, day, weekday, hour, day_of_year, axis=1)


def _datetime(g: _Graph, step: Any) -> str:
    if tuple(DATETIME_PARTS) != _PARTS:  # _date_parts computes exactly these, in order
        raise RuntimeError(f"date parts {DATETIME_PARTS} are not the exported {_PARTS}")
    parts, missing = [], []
    for column in step.columns:
        absent = g.op("Equal", column, g.i64(NAT))
        safe = g.op("Where", absent, g.i64(0), column)  # NaT would overflow the arithmetic
        parts.append(_date_parts(g, safe))
        missing.append(absent)
    p = len(_PARTS)
    X = g.op("Cast", g.concat(parts), to=_DOUBLE)
    M = g.concat(missing)
    per_part = g.columns(M, np.repeat(np.arange(len(step.columns)), p))
    filled = g.op("Where", per_part, g.const([step.imputer.statistics_], np.float64), X)
    z = g.op("Div", g.op("Sub", filled, g.const([step.scaler.mean_], np.float64)),
             g.const([step.scaler.scale_], np.float64))  # fmt: skip
    if not step.indicators:
        return z
    return g.concat([z, g.op("Cast", g.columns(M, step.indicators), to=_DOUBLE)])


# ---------------------------------------------------------------- estimators


def _linear(g: _Graph, estimator: Any, X: str, output: str) -> None:
    z = g.op("Add", g.op("MatMul", X, g.const(estimator.coef_, np.float64, "coef")),
             g.const(estimator.intercept_, np.float64, "intercept"))  # fmt: skip
    if estimator.task == "binary":
        g.op("Sigmoid", z, out=output)
    else:
        g.op("Identity", z, out=output)


def _trees(g: _Graph, estimator: Any, X: str, output: str, opsets: dict) -> dict:
    """LightGBM's trees by onnxmltools, spliced in after a cast to float32; returns the
    opsets the merged graph needs."""
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    n = estimator.n_features_
    trees = convert_lightgbm(estimator.booster_, initial_types=[("X", FloatTensorType([None, n]))],
                             target_opset=GBT_OPSET, zipmap=False)  # fmt: skip
    prefix = g.name("gbt") + "/"
    trees = onnx.compose.add_prefix(trees, prefix)
    g.op("Cast", X, out=f"{prefix}X", to=TensorProto.FLOAT)
    g.nodes.extend(trees.graph.node)
    g.inits.extend(trees.graph.initializer)
    outputs = [o.name for o in trees.graph.output]
    if estimator.task == "binary":  # (label, probabilities [N, 2])
        score = g.op("Gather", outputs[1], g.i64(1), axis=1)
    else:  # variable [N, 1]
        score = g.op("Reshape", outputs[0], g.i64([-1]))
    g.op("Cast", score, out=output, to=_DOUBLE)
    for o in trees.opset_import:
        domain = o.domain if o.domain != "ai.onnx" else ""
        opsets[domain] = max(opsets.get(domain, 0), o.version)
    return opsets


# ---------------------------------------------------------------- publishing


def _publish(out: Path, data: bytes) -> None:
    """Temporary file in the same folder, fsync, os.replace: readers see the old file or
    the whole new one, never a part."""
    if out.is_dir():
        raise BadInput(f"--out {out}: is a folder; name the .onnx file to write")
    if not out.parent.is_dir():
        raise BadInput(f"--out {out}: folder {out.parent} does not exist")
    publish(out, data)
