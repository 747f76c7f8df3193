"""The Open Inference Protocol (KServe's v2 REST protocol) on `tether serve`, beside /predict.

    GET  /v2                                    server metadata
    GET  /v2/health/live, /v2/health/ready      200 when true, 400 when not (the protocol: 4xx is false)
    GET  /v2/models/{model}[/versions/{v}]      the live release: name, versions, platform, inputs, outputs
    GET  /v2/models/{model}[/versions/{v}]/ready
    POST /v2/models/{model}[/versions/{v}]/infer

`model` is the release's model name and `v` its semver; another version is a 404. Tabular input
is one named input per feature, shape `[n]` (or `[n, 1]`), as MLServer's pandas codec and
KServe's tabular examples send it: the rows become the records /predict takes and the same
feature-schema validator checks them, then the same worker answers. Each key of the predictions
(`score`, `decision`, and whatever an entrypoint returns) comes back as a named output of shape
`[n]`. The request body is untrusted: the same size limit as /predict, then pydantic models;
any bad input is a 400 with the protocol's `{"error": "..."}`, an unknown model or version a 404.
Binary tensor data (the protocol's extension) is refused: send JSON.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request  # module level: FastAPI resolves the endpoint's annotations here

from tether.core.metricnames import CANARY, STABLE
from tether.runtime.schema import Feature, clip, parse_features

if TYPE_CHECKING:
    from fastapi import FastAPI

    from tether.serve.supervisor import Live, Supervisor

Datatype = Literal["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
                   "FP16", "FP32", "FP64", "BYTES"]
INTS = ("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64")
FLOATS = ("FP16", "FP32", "FP64")
ACCEPTS = {"number": FLOATS + INTS, "integer": INTS, "boolean": ("BOOL",), "string": ("BYTES",)}
PLATFORM = "tether"


class RequestInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    shape: list[int] = Field(min_length=1, max_length=2)
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any]


class RequestOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    """The body of POST .../infer (`id`, `parameters`, `inputs`, `outputs`)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, max_length=256)
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class BadInput(ValueError):
    """A request the protocol answers with 400 and `{"error": message}`."""


def _error(msg: str, status: int = 400):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": clip(msg, 500)}, status_code=status)


def parse_request(body: bytes) -> InferRequest:
    """The request's pydantic model; BadInput naming what is wrong."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadInput(f"the body is not valid JSON: {clip(str(exc), 200)}") from None
    try:
        return InferRequest.model_validate(payload)
    except ValidationError as exc:
        errs = exc.errors(include_url=False, include_input=False)
        where = ".".join(str(x) for x in errs[0].get("loc", ())) or "body"
        raise BadInput(f"not an inference request: {where}: {errs[0].get('msg', 'invalid')}") from None


def _flat(data: list) -> list:
    if all(not isinstance(v, list) for v in data):
        return data
    out: list = []
    for v in data:
        if isinstance(v, list):
            if any(isinstance(x, list) for x in v):
                raise BadInput("tabular inputs are one column each: shape [n] or [n, 1]")
            out.extend(v)
        else:
            out.append(v)
    return out


def _kind_ok(datatype: str, v: Any) -> bool:
    if v is None:
        return True  # the schema says whether the feature is nullable
    if datatype == "BOOL":
        return isinstance(v, bool)
    if datatype == "BYTES":
        return isinstance(v, str)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return datatype in FLOATS or isinstance(v, int) or (v == v and v not in (float("inf"), float("-inf"))
                                                        and v.is_integer())


def to_records(req: InferRequest, features: list[Feature] | None, limit: int) -> list[dict]:
    """The records /predict takes, one per row of the named inputs (one input per feature)."""
    by_name = {f.name: f for f in features or ()}
    columns: dict[str, list] = {}
    n = None
    for inp in req.inputs:
        if inp.name in columns:
            raise BadInput(f"input {inp.name!r} is given twice")
        if any(d < 0 for d in inp.shape) or (len(inp.shape) == 2 and inp.shape[1] != 1):
            raise BadInput(f"input {inp.name!r} has shape {inp.shape}: a tabular input is [n] or [n, 1]")
        values = _flat(inp.data)
        if len(values) != inp.shape[0]:
            raise BadInput(f"input {inp.name!r} has shape {inp.shape} but {len(values)} values")
        if n is not None and inp.shape[0] != n:
            raise BadInput(f"input {inp.name!r} has {inp.shape[0]} rows, the other inputs {n}")
        n = inp.shape[0]
        feat = by_name.get(inp.name)
        if feat is not None and feat.kind in ACCEPTS and inp.datatype not in ACCEPTS[feat.kind]:
            want = _tensor_meta(feat)["datatype"]
            raise BadInput(f"input {inp.name!r} is {inp.datatype}, but feature {inp.name!r} is {feat.dtype}: send {want}")
        bad = next((i for i, v in enumerate(values) if not _kind_ok(inp.datatype, v)), None)
        if bad is not None:
            raise BadInput(f"input {inp.name!r} is {inp.datatype}, but row {bad} is {clip(json.dumps(values[bad]), 40)}")
        columns[inp.name] = values
    if not n:
        raise BadInput("the inputs hold no rows")
    if n > limit:
        raise BadInput(f"at most {limit} rows per request, got {n}")
    return [{name: col[i] for name, col in columns.items()} for i in range(n)]


def _datatype(values: list) -> tuple[str, list]:
    if all(isinstance(v, bool) for v in values):
        return "BOOL", values
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "INT64", values
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "FP64", [float(v) for v in values]
    if all(isinstance(v, str) for v in values):
        return "BYTES", values
    return "BYTES", [json.dumps(v) for v in values]


def to_outputs(preds: list[dict], wanted: list[RequestOutput] | None) -> list[dict]:
    """One named output per key of the predictions, shape [n]; only those `wanted` if given."""
    keys: list[str] = []
    for p in preds:
        keys += [k for k in p if k not in keys]
    if wanted:
        unknown = [o.name for o in wanted if o.name not in keys]
        if unknown:
            raise BadInput(f"no output named {unknown[0]!r}: the outputs are {', '.join(keys)}")
        keys = [o.name for o in wanted]
    out = []
    for k in keys:
        dtype, data = _datatype([p.get(k) for p in preds])
        out.append({"name": k, "datatype": dtype, "shape": [len(preds)], "data": data})
    return out


def _tensor_meta(f: Feature) -> dict:
    if f.kind == "category":
        dtype = "BYTES" if all(isinstance(c, str) for c in f.categories) else _datatype(list(f.categories))[0]
    else:
        dtype = {"number": "FP64", "integer": "INT64", "boolean": "BOOL"}.get(f.kind, "BYTES")
    return {"name": f.name, "datatype": dtype, "shape": [-1]}


OUTPUTS = [{"name": "score", "datatype": "FP64", "shape": [-1]}, {"name": "decision", "datatype": "BOOL", "shape": [-1]}]


def _problem_text(errors: list[dict]) -> str:
    """The validator's FastAPI-shaped errors as one line naming the input and the row."""
    parts = []
    for e in errors[:3]:
        loc = [x for x in e.get("loc", ()) if x not in ("body", "records")]
        row = next((x for x in loc if isinstance(x, int)), None)
        name = next((x for x in loc if isinstance(x, str)), None)
        where = (f"input {name!r}" if name else "a row") + (f" row {row}" if row is not None else "")
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "; ".join(parts)


class V2:
    """The protocol's routes over the same supervisors, split and metrics as /predict."""

    def __init__(self, sup: Supervisor, can: Supervisor | None, choose, metrics, max_body: int,
                 request_timeout: float, alias: str | None = None) -> None:
        self.sup, self.can, self.choose, self.metrics = sup, can, choose, metrics
        self.max_body, self.request_timeout, self.alias = max_body, request_timeout, alias  # --model-name

    def register(self, app: FastAPI) -> None:
        app.get("/v2")(self.server_metadata)
        app.get("/v2/health/live")(self.live)
        app.get("/v2/health/ready")(self.ready)
        for base in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
            app.get(base)(self.metadata)
            app.get(base + "/ready")(self.model_ready)
            app.post(base + "/infer")(self.infer)

    def server_metadata(self):
        from importlib.metadata import PackageNotFoundError, version

        try:
            ours = version("tether")
        except PackageNotFoundError:
            ours = "unknown"
        return {"name": "tether", "version": ours, "extensions": []}

    def live(self):
        return {"live": True}

    def ready(self):
        from fastapi.responses import JSONResponse

        if self.sup.serving() is None:
            return JSONResponse({"ready": False, "error": self.sup.reason()}, status_code=400)
        return {"ready": True}

    def arms(self) -> list[tuple[Supervisor, Live]]:
        out = []
        for s in (self.sup, self.can):
            live = s.serving() if s is not None else None
            if s is not None and live is not None:
                out.append((s, live))
        return out

    def resolve(self, model: str, version: str | None) -> tuple[Supervisor | None, Live | None, Any]:
        """(the supervisor a version names or None for the split, the live release to describe,
        None) or (None, None, the error response)."""
        arms = self.arms()
        if not arms or arms[0][0] is not self.sup:
            return None, None, _error(f"no verified release is serving: {self.sup.reason()}", 503)
        ours = [(s, live) for s, live in arms if model in (live.hello.model, self.alias)]
        if not ours:
            return None, None, _error(f"unknown model {model!r}: this server serves {arms[0][1].hello.model!r}", 404)
        if version is None:
            return None, ours[0][1], None
        for s, live in ours:
            if live.hello.version == version:
                return s, live, None
        live_versions = ", ".join(live.hello.version for _s, live in ours)
        return None, None, _error(f"model {model!r} has no version {version!r} live: it serves {live_versions}", 404)

    def metadata(self, model: str, version: str | None = None):
        _s, live, err = self.resolve(model, version)
        if err is not None:
            return err
        assert live is not None
        h = live.hello
        inputs = [_tensor_meta(f) for f in parse_features(h.schema)] if h.schema else []
        versions = [v.hello.version for _s2, v in self.arms() if model in (v.hello.model, self.alias)]
        return {"name": model, "versions": versions if version is None else [version], "platform": PLATFORM,
                "inputs": inputs, "outputs": OUTPUTS,
                "parameters": {"release": h.release, "commit": h.commit, "manifest_sha256": h.manifest_sha256,
                               "loader": h.loader}}

    def model_ready(self, model: str, version: str | None = None):
        from fastapi.responses import JSONResponse

        _s, _live, err = self.resolve(model, version)
        if err is not None:
            if err.status_code == 503:
                return JSONResponse({"name": model, "ready": False, "error": self.sup.reason()}, status_code=400)
            return err
        return {"name": model, "ready": True}

    async def infer(self, request: Request, model: str, version: str | None = None):
        from starlette.concurrency import run_in_threadpool

        t0 = time.perf_counter()
        body = await read_capped(request, self.max_body)
        name, scores, arm = None, (), STABLE if self.can is not None else None
        if isinstance(body, str):
            resp = _error(body)
        elif request.headers.get("inference-header-content-length") is not None:
            resp = _error("binary tensor data is not supported here: send the tensors as JSON (binary_data=False)")
        else:
            resp, name, scores, arm = await run_in_threadpool(self.answer, body, model, version,
                                                              request.headers.get("x-tether-key"), arm)
        if resp.status_code == 404:
            return resp  # not a request to this model: nothing to count
        live = self.sup.live
        return self.metrics.answered(resp, name or (live.worker.name if live else "none"), t0, scores, arm)

    def answer(self, body: bytes, model: str, version: str | None, key: str | None, arm: str | None):
        """(response, release that answered, scores, arm) for one request body."""
        which, _live, err = self.resolve(model, version)
        if err is not None:
            return err, None, (), arm
        try:
            req = parse_request(body)
        except BadInput as exc:
            return _error(str(exc)), None, (), arm
        if which is None:
            which, arm = self.choose(None, key)
        elif self.can is not None:
            arm = CANARY if which is self.can else STABLE
        live = which.live
        while live is not None and not live.worker.acquire():  # draining: the new one is live already
            time.sleep(0.001)
            live = which.live
        if live is None:
            return _error(f"no verified release is serving: {which.last_error}", 503), None, (), arm
        try:
            resp, scores = self.predict(live, req, model)
        finally:
            live.worker.release_slot()
        return resp, live.worker.name, scores, arm

    def predict(self, live: Live, req: InferRequest, name: str):
        from fastapi.responses import JSONResponse

        from tether.runtime.workerproc import WorkerGone

        h = live.hello
        features = live.validator.features if live.validator is not None else None
        try:
            records = to_records(req, features, h.max_records or 1000)
        except BadInput as exc:
            return _error(str(exc)), ()
        if live.validator is not None:
            clean, errors = live.validator.validate(records)
            if errors:
                return _error(_problem_text(errors)), ()
            records = clean or []
        try:
            reply = live.worker.request(records, self.request_timeout)
        except WorkerGone as exc:
            return _error(str(exc), 503), ()
        if not reply.ok:
            status = int(reply.status)
            return _error(reply.error, 400 if status < 500 else status), ()
        preds = reply.predictions
        if preds is None:
            raise TypeError(f"the worker for {live.worker.name} replied ok without predictions")
        try:
            outputs = to_outputs(preds, req.outputs)
        except BadInput as exc:
            return _error(str(exc)), ()
        out: dict[str, Any] = {"model_name": name, "model_version": h.version}
        if req.id is not None:
            out["id"] = req.id
        out["parameters"] = {"release": h.release, "commit": h.commit}
        out["outputs"] = outputs
        scores = [p["score"] for p in preds
                  if isinstance(p.get("score"), (int, float)) and not isinstance(p.get("score"), bool)]
        return JSONResponse(out), scores


async def read_capped(request: Request, max_body: int) -> bytes | str:
    """The body, or why it is refused (larger than `max_body`, as /predict counts it)."""
    from starlette.requests import ClientDisconnect

    declared = request.headers.get("content-length")
    too_big = f"the body is larger than {max_body} bytes"
    if declared is not None and (not declared.isdigit() or int(declared) > max_body):
        return too_big
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                return too_big
            chunks.append(chunk)
    except ClientDisconnect:
        return "the client disconnected before the body ended"
    return b"".join(chunks)
