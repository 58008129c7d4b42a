"""The filtering part of a KQL query over ``traces``, run on log records in Python (offline: no Log Analytics).

Enough of KQL for the alert and workbook filters this repository writes: ``traces | where … | extend a = … | where …``
up to the first ``summarize``/``project``/``order``/``render``. Conditions: ``or``/``and`` (``and`` binds first),
``isnotempty(x)``, ``x == "v"``, ``x != "v"``, ``x in ("v", …)``; values: ``tostring(customDimensions.name)`` (as
Application Insights stores a log record's extra fields: text, "" when absent), a column made by ``extend``, a string
literal. Anything else raises, so a query this cannot read fails its test instead of passing vacuously."""

from __future__ import annotations

import logging
import re
from typing import Any

_TOSTRING = re.compile(r"^tostring\(customDimensions\.(\w+)\)$")
_STRING = re.compile(r'^"([^"]*)"$')
_IN = re.compile(r"^(.+?)\s+in\s+\((.*)\)$")
_STOP = ("summarize ", "project ", "order ", "render ", "top ", "take ")

Row = dict[str, Any]


def row_of(record: logging.LogRecord) -> Row:
    """A ``traces`` row of a log record: its extra fields as ``customDimensions`` (text), its message."""
    standard = set(vars(logging.makeLogRecord({})))
    dims = {k: str(v) for k, v in vars(record).items() if k not in standard and k not in ("message", "asctime")}
    return {"customDimensions": dims, "message": record.getMessage()}


def _value(expr: str, row: Row) -> Any:
    expr = expr.strip()
    if m := _TOSTRING.match(expr):
        return row["customDimensions"].get(m.group(1), "")
    if m := _STRING.match(expr):
        return m.group(1)
    if re.fullmatch(r"\w+", expr) and expr in row:
        return row[expr]
    raise ValueError(f"kql_filter cannot read the value {expr!r}")


def _atom(cond: str, row: Row) -> bool:
    cond = cond.strip()
    if cond.startswith("isnotempty(") and cond.endswith(")"):
        return _value(cond[len("isnotempty("):-1], row) != ""
    if m := _IN.match(cond):
        return _value(m.group(1), row) in [_value(v, row) for v in m.group(2).split(",")]
    for op in ("==", "!="):
        if op in cond:
            left, right = cond.split(op, 1)
            return (_value(left, row) == _value(right, row)) == (op == "==")
    raise ValueError(f"kql_filter cannot read the condition {cond!r}")


def matches(cond: str, row: Row) -> bool:
    return any(all(_atom(a, row) for a in re.split(r"\s+and\s+", part)) for part in re.split(r"\s+or\s+", cond))


def _extend(assignments: str, row: Row) -> Row:
    out = dict(row)
    for assignment in re.split(r",\s*(?=\w+\s*=[^=])", assignments):
        name, expr = assignment.split("=", 1)
        out[name.strip()] = _value(expr, out)
    return out


def filtered(query: str, rows: list[Row]) -> list[Row]:
    """The rows that reach the query's first aggregation, with the columns its ``extend`` steps made."""
    steps = [s.strip() for s in query.split("|")]
    if steps[0] != "traces":
        raise ValueError(f"kql_filter reads queries over traces only, not {steps[0]!r}")
    for step in steps[1:]:
        if step.startswith(_STOP):
            break
        if step.startswith("where "):
            rows = [r for r in rows if matches(step[len("where "):], r)]
        elif step.startswith("extend "):
            rows = [_extend(step[len("extend "):], r) for r in rows]
        else:
            raise ValueError(f"kql_filter cannot run the step {step!r}")
    return rows
