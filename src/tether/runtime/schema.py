"""The input contract of a served model: a feature schema turned into a pydantic validator.

A schema is the bundle's `feature_schema.json` shape, `{"features": [{"name", "dtype", ...}],
"target"}`, whoever declares it (the bundle, `meta.tether.serve.schema`, or the entrypoint's
`input_schema`). Per feature:

    dtype        float64|float32|number       a finite JSON number inside the float32 range
                 int64|int32|int16|int8|integer|uint8…  a whole number inside the dtype's range
                 bool|boolean                 true or false
                 string|str|object            a JSON string (`max_length`, default 100,000)
                 category                     one of `categories`
    nullable     true: null (or leaving the field out) is allowed and passed on as None

`min`/`max` in a bundle's schema are the training data's range and only informative: a value
outside them is still served. Limits are those of the dtype, where a model would otherwise
overflow (1e308 → inf in float32, 1e19 → INT64_MIN).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any, Literal

FLOAT32_MAX = 3.4028234663852886e38
INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1), "int16": (-(2**15), 2**15 - 1), "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1), "integer": (-(2**63), 2**63 - 1), "int": (-(2**63), 2**63 - 1),
    "uint8": (0, 2**8 - 1), "uint16": (0, 2**16 - 1), "uint32": (0, 2**32 - 1), "uint64": (0, 2**64 - 1),
}
FLOATS = ("float64", "float32", "float", "number", "double")
STRINGS = ("string", "str", "object", "text")
BOOLS = ("bool", "boolean")
MAX_STRING = 100_000
MAX_ECHO = 80  # characters of a client's value an error message may quote


class SchemaError(ValueError):
    """A schema that cannot be served (unknown dtype, a category feature without categories)."""


@dataclass(frozen=True)
class Feature:
    name: str
    kind: Literal["number", "integer", "boolean", "string", "category"]
    dtype: str = ""
    nullable: bool = False
    lo: float | int = 0  # the range of a number or integer feature
    hi: float | int = 0
    categories: tuple = ()
    max_length: int = MAX_STRING


def parse_features(schema: dict) -> list[Feature]:
    feats = schema.get("features") if isinstance(schema, dict) else None
    if not isinstance(feats, list) or not feats:
        raise SchemaError("a schema needs a non-empty `features` list")
    out = []
    for f in feats:
        if not isinstance(f, dict) or not isinstance(f.get("name"), str):
            raise SchemaError(f"every feature needs a name: {f!r}")
        dtype = str(f.get("dtype", "float64")).lower()
        nullable = bool(f.get("nullable", False))
        if dtype in FLOATS:
            out.append(Feature(f["name"], "number", dtype, nullable, -FLOAT32_MAX, FLOAT32_MAX))
        elif dtype in INT_RANGES:
            lo, hi = INT_RANGES[dtype]
            out.append(Feature(f["name"], "integer", dtype, nullable, lo, hi))
        elif dtype in BOOLS:
            out.append(Feature(f["name"], "boolean", dtype, nullable))
        elif dtype in STRINGS:
            out.append(Feature(f["name"], "string", dtype, nullable, max_length=int(f.get("max_length", MAX_STRING))))
        elif dtype == "category":
            cats = f.get("categories")
            if not isinstance(cats, list) or not cats:
                raise SchemaError(f"category feature {f['name']!r} lists no `categories`")
            out.append(Feature(f["name"], "category", dtype, nullable, categories=tuple(cats)))
        else:
            raise SchemaError(f"feature {f['name']!r} has dtype {dtype!r}, which tether cannot validate")
    return out


def _number(lo: float, hi: float):
    def check(v: Any) -> Any:
        if isinstance(v, (str, bool)) or not isinstance(v, (int, float)):
            raise ValueError("must be a number")
        if isinstance(v, float) and v != v:
            raise ValueError("must be a finite number, got NaN")
        if not lo <= v <= hi:
            raise ValueError(f"out of range: must be a finite number between {lo:.7g} and {hi:.7g}")
        return float(v)
    return check


def _whole(lo: int, hi: int, dtype: str):
    def check(v: Any) -> Any:
        if isinstance(v, (str, bool)) or not isinstance(v, (int, float)):
            raise ValueError("must be a whole number")
        if isinstance(v, float):
            if v != v or v in (float("inf"), float("-inf")):
                raise ValueError("must be a finite whole number")
            if not v.is_integer():
                raise ValueError("must be a whole number")
        if not lo <= v <= hi:
            raise ValueError(f"out of range for {dtype}: must be between {lo} and {hi}")
        return int(v)
    return check


class RecordValidator:
    """Validates a request's records against a schema; `errors` come back FastAPI-shaped
    (loc, msg, type), never quoting more than MAX_ECHO characters of the client's input."""

    def __init__(self, schema: dict, target: str | None = None) -> None:
        from typing import Annotated, Literal, Optional

        from pydantic import BeforeValidator, ConfigDict, Field, Strict, TypeAdapter, create_model

        self.features = parse_features(schema)
        self.target = target if target is not None else schema.get("target")
        fields: dict[str, Any] = {}
        for f in self.features:
            t: Any
            if f.kind == "number":
                t = Annotated[float, BeforeValidator(_number(f.lo, f.hi))]
            elif f.kind == "integer":
                t = Annotated[int, BeforeValidator(_whole(int(f.lo), int(f.hi), f.dtype))]
            elif f.kind == "boolean":
                t = Annotated[bool, Strict()]
            elif f.kind == "string":
                t = Annotated[str, Strict(), Field(max_length=f.max_length)]
            else:
                t = Literal[f.categories]
            fields[f.name] = (Optional[t], None) if f.nullable else (t, ...)
        if self.target and self.target not in fields:
            fields[self.target] = (Optional[Any], None)  # a labelled row may be sent as it is
        model = create_model("Record", __config__=ConfigDict(extra="forbid"), **fields)
        self._adapter: TypeAdapter[list[Any]] = TypeAdapter(list[model])  # type: ignore[valid-type]
        self.names = [f.name for f in self.features]

    def validate(self, records: list) -> tuple[list[dict] | None, list[dict]]:
        """(clean records in schema order, []) or (None, errors)."""
        from pydantic import ValidationError

        try:
            rows = self._adapter.validate_python(records)
        except ValidationError as exc:
            return None, [problem(e) for e in exc.errors(include_url=False, include_input=False)][:50]
        return [{n: getattr(r, n) for n in self.names} for r in rows], []


def problem(err: Mapping[str, Any]) -> dict:
    msg = err.get("msg", "invalid")
    if err.get("type") == "extra_forbidden":
        msg = "unknown field"
    elif err.get("type") == "missing":
        msg = "missing"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return {"loc": ["body", "records", *err.get("loc", ())], "msg": clip(msg), "type": err.get("type", "value_error")}


def clip(text: str, n: int = 300) -> str:
    return text if len(text) <= n else text[:n] + "…"


def schema_summary(schema: dict | None) -> list[dict] | None:
    if not schema:
        return None
    return [{"name": f.name, "kind": f.kind, "nullable": f.nullable} for f in parse_features(schema)]


def example_record(schema: dict) -> dict:
    """One record the schema accepts, for a worker's warm-up before it says ready: a number at
    the middle of the training range the schema gives (`min`/`max`), else 0, inside its dtype's
    range; false; an empty string; the first category."""
    import math

    raw = {f.get("name"): f for f in schema.get("features", []) if isinstance(f, dict)}
    out: dict[str, Any] = {}
    for f in parse_features(schema):
        ends = [x for x in (raw[f.name].get("min"), raw[f.name].get("max"))
                if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)]
        mid = sum(ends) / 2 if len(ends) == 2 else 0
        if f.kind == "number":
            out[f.name] = float(min(max(mid, f.lo), f.hi))
        elif f.kind == "integer":
            out[f.name] = int(min(max(round(mid), f.lo), f.hi))
        elif f.kind == "boolean":
            out[f.name] = False
        elif f.kind == "string":
            out[f.name] = ""
        else:
            out[f.name] = f.categories[0]
    return out
