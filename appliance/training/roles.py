"""Column roles: which columns of a training table become model inputs, and how.

``infer_roles`` gives each column one of ``ROLES``:

- floats and decimals: numeric;
- integers: numeric, or id when the name says so (``id``, ``*_id``, ``*Id``, ``uuid``) or
  the values are nearly all distinct and dense (``ID_RATIO`` of the rows distinct, more
  than ``ID_MIN_ROWS`` rows, spanning less than twice their count: a row number or an
  auto-increment key; amounts are seldom dense);
- booleans: categorical ("true" / "false"), so a JSON ``true`` is a valid served value;
- strings and dictionaries: categorical, or id by name or when nearly all distinct;
- timestamps and dates: datetime;
- everything else (lists, structs, binary, times of day, durations) and columns with no
  values: ignore.

Overrides win over inference, but must name a column and a role that its type can take.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

from appliance.errors import BadInput
from appliance.training.pipeline import ROLES as INPUT_ROLES
from appliance.training.pipeline import Input

ROLES = (*INPUT_ROLES, "id", "ignore")
ID_RATIO = 0.9
ID_MIN_ROWS = 50


def _is_id_name(name: str) -> bool:
    return bool(re.search(r"(^|[_\-\s])id$", name, re.IGNORECASE)
                or re.search(r"[a-z0-9](Id|ID)$", name)
                or name.lower() in ("uuid", "guid"))  # fmt: skip


def _base(t: pa.DataType) -> pa.DataType:
    return t.value_type if pa.types.is_dictionary(t) else t


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def allowed_roles(t: pa.DataType) -> tuple[str, ...]:
    """The roles a column of Arrow type ``t`` can take."""
    t = _base(t)
    if pa.types.is_null(t):
        return ROLES
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return ("numeric", "categorical", "id", "ignore")
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        return ("numeric", "categorical", "id", "ignore")
    if _is_text(t):
        return ("categorical", "datetime", "id", "ignore")
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return ("datetime", "ignore")
    return ("ignore",)


def infer_role(name: str, column: pa.ChunkedArray) -> str:
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    t = column.type
    n = len(column)
    if n == column.null_count:
        return "ignore"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "numeric"
    if pa.types.is_boolean(t):
        return "categorical"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "datetime"
    if not (pa.types.is_integer(t) or _is_text(t)):
        return "ignore"
    if _is_id_name(name):
        return "id"
    distinct = pc.count_distinct(column).as_py()
    nearly_unique = n > ID_MIN_ROWS and distinct > ID_RATIO * (n - column.null_count)
    if pa.types.is_integer(t):
        if nearly_unique:
            lo, hi = pc.min_max(column).values()
            if hi.as_py() - lo.as_py() < 2 * distinct:  # dense: a row number or a key
                return "id"
        return "numeric"
    return "id" if nearly_unique else "categorical"


def infer_roles(
    table: pa.Table, exclude: set[str] | None = None, overrides: dict[str, str] | None = None
) -> dict[str, str]:
    """A role for every column of ``table`` not in ``exclude``, in the table's order.

    ``overrides`` (column -> role) win over inference; an unknown column or role, a role
    the column's type cannot take, or an input role for an excluded column is BadInput.
    """
    exclude = set(exclude or ())
    overrides = dict(overrides or {})
    names = table.column_names
    for name, role in overrides.items():
        if name not in names:
            raise BadInput(f"roles: no column {name!r} (columns: {', '.join(names)})")
        if role not in ROLES:
            raise BadInput(f"roles: {name!r}: {role!r} is not a role ({', '.join(ROLES)})")
        t = table.schema.field(name).type
        if role not in allowed_roles(t):
            raise BadInput(f"roles: {name!r} has type {t}, which cannot be {role} "
                           f"(it can be: {', '.join(allowed_roles(t))})")  # fmt: skip
        if name in exclude and role in INPUT_ROLES:
            raise BadInput(f"roles: {name!r} is excluded from the model inputs (the label, a "
                           "key, the sensitive attribute or a column left out of the features), "
                           f"so it cannot be a {role} input")  # fmt: skip
    return {
        name: overrides.get(name) or infer_role(name, table[name])
        for name in names
        if name not in exclude
    }


def inputs_for(roles: dict[str, str]) -> list[Input]:
    """The model inputs among ``roles`` (numeric, categorical, datetime), in order."""
    return [Input(name, role) for name, role in roles.items() if role in INPUT_ROLES]
