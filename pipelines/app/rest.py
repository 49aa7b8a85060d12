"""REST endpoint over a :class:`~serving.Predictor` or :class:`~serving.CanaryRouter`.

The application side of serving (fastapi, pydantic), so that ``serving`` itself stays numpy and
onnxruntime only::

    from serving import Predictor
    from pipelines.app.rest import create_app
    app = create_app(Predictor.load("bundle_dir"), api_keys={"desk-a": "<secret>"})

``POST /predict`` takes ``{"features": {...}}`` (or a list in schema order) or
``{"rows": [[...], ...]}``, plus optional ``"fallback"``. Feature values are JSON numbers or
``null`` (a missing value, for the fallback rule); ``true``, strings and other keys are refused.
For a sequence model, ``features`` is one window (``{"feature": [oldest, ..., latest]}`` or a
list of time steps) and ``rows`` a list of windows.

- **Keys.** With ``api_keys``, ``/predict`` and ``/schema`` need ``Authorization: Bearer <key>``
  or ``X-API-Key: <key>`` (compared in constant time); ``/health`` and the OpenAPI document stay
  open. Without keys every caller is anonymous (``alphaops serve`` then binds loopback only).
- **Limits.** A body over ``max_body_bytes`` or a batch over ``max_batch_rows`` rows is answered
  413 before anything is parsed or predicted.
- **Canary.** The server picks the arm: from the caller's key (a hash of the key's name, plus
  the ``routing_header`` value when one is configured), so a caller cannot choose its arm;
  without keys, per request, at random with the challenger's share.

Answers: 200 the prediction; 400 a body that is not a JSON object; 401 a missing or unknown key;
413 too large; 422 a JSON object that does not fit (the message names the field, or the
:class:`~serving.InputError` names the feature). Every error body is ``{"detail": "..."}``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, model_validator

from serving.errors import InputError
from serving.predictor import Predictor
from serving.router import CanaryRouter

DEFAULT_MAX_BODY_BYTES = 1_048_576  # 1 MiB: about 800 rows of 64 features as JSON
DEFAULT_MAX_BATCH_ROWS = 1_000
_SHOWN = 3

Number = Annotated[float, Field(strict=True)]
Value = Number | None
Row = dict[str, Value] | list[Value]
Window = dict[str, list[Value]] | list[list[Value]]


class ErrorBody(BaseModel):
    """Every error answer: one line saying what is wrong."""

    detail: str = Field(description="What is wrong, in one line (names the field or feature).")


class PredictRequest(BaseModel):
    """Exactly one of ``features`` (one row) or ``rows`` (a batch)."""

    model_config = ConfigDict(extra="forbid")

    features: Row | Window | None = Field(
        default=None,
        description="One row: {feature: value} or values in schema order. Sequence models: "
        "one window, {feature: [oldest, ..., latest]} or a list of time steps. Values are "
        "numbers, or null for a missing value.",
    )
    rows: list[Row | Window] | None = Field(
        default=None,
        description="A batch: a list of rows (lists in schema order, or objects); of windows "
        "for sequence models.",
    )
    fallback: bool | None = Field(
        default=None, strict=True,
        description="Answer invalid rows with the schema's fallback rule.",
    )

    @model_validator(mode="before")
    @classmethod
    def _strict_numbers(cls, data: Any) -> Any:
        """Refuse booleans and strings where numbers go, naming the place (``true`` is no 1.0)."""
        if isinstance(data, dict):
            for key, depth in (("features", 2), ("rows", 3)):
                if data.get(key) is not None:
                    _check_numbers(data[key], key, depth)
        return data


def _check_numbers(value: Any, where: str, depth: int) -> None:
    if isinstance(value, bool) or isinstance(value, str):
        raise ValueError(f"{where} is {json.dumps(value)[:40]}: a feature value must be a number or null")
    if value is None or isinstance(value, (int, float)):
        return
    if depth == 0 or not isinstance(value, (list, dict)):
        kind = "an object" if isinstance(value, dict) else "a list" if isinstance(value, list) else "not a number"
        raise ValueError(f"{where} is {kind}: expected a number or null here")
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for k, v in items:
        _check_numbers(v, f"{where}.{k}" if isinstance(value, dict) else f"{where}[{k}]", depth - 1)


def _describe(p: Predictor) -> dict[str, Any]:
    return {"model": p.name, "version": p.version, "task": p.task, "sealed_by": p.sealed_by,
            "stats": p.stats}


def _error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "The body is not a JSON object (malformed JSON, empty, or another type).",
        401: "No API key, or an unknown one (only when keys are configured).",
        413: "The body is larger than the limit, or the batch has more rows than the limit.",
        422: "The JSON object does not fit: a field, a value (true, a string), a missing or "
             "unknown feature, NaN; the message names it.",
    }
    return {c: {"model": ErrorBody, "description": text[c]} for c in codes}


class _BodyLimit:
    """ASGI middleware: answer 413 to a body over ``limit`` bytes, before the app reads it.

    A declared ``Content-Length`` over the limit is refused at once; a body sent without one is
    read up to the limit and refused as soon as it passes it."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_error(send, 400, "Content-Length is not a number")
                    return
        if declared is not None and declared > self.limit:
            await _send_error(send, 413, self._too_large(declared))
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _send_error(send, 413, self._too_large(size, at_least=True))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self, size: int, at_least: bool = False) -> str:
        return (f"request body of {'more than ' if at_least else ''}{size:,} bytes is over the limit of "
                f"{self.limit:,} bytes (ALPHAOPS_SERVE_MAX_BODY_BYTES)")


async def _send_error(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def _key_table(api_keys: Mapping[str, str] | Iterable[str] | None) -> list[tuple[str, bytes]]:
    """(caller name, SHA-256 of the key) per key; a bare key is named by a prefix of its hash."""
    if not api_keys:
        return []
    pairs = api_keys.items() if isinstance(api_keys, Mapping) else (
        (f"key-{hashlib.sha256(k.encode()).hexdigest()[:12]}", k) for k in api_keys)
    table = []
    for caller, key in pairs:
        if not key:
            raise ValueError(f"API key of {caller!r} is empty")
        table.append((str(caller), hashlib.sha256(key.encode()).digest()))
    return table


def _validation_error(exc: RequestValidationError) -> tuple[int, str]:
    """(400 or 422, one line) for a body FastAPI could not validate."""
    errors = list(exc.errors())
    for e in errors:
        if e.get("type") == "json_invalid":
            return 400, f"request body is not valid JSON: {e.get('ctx', {}).get('error', e.get('msg'))}"
    lines = []
    for e in errors:
        loc = [str(part) for part in e.get("loc", ()) if "[" not in str(part)]  # drop union branch tags
        if loc[:1] == ["body"] and len(loc) == 1 and e.get("type") in (
                "missing", "model_attributes_type", "dict_type", "model_type"):
            return 400, "request body must be a JSON object, e.g. {\"features\": {...}}"
        msg = str(e.get("msg", "")).removeprefix("Value error, ")
        where = ".".join(loc[1:] if loc[:1] == ["body"] else loc)
        line = f"{where}: {msg}" if where else msg
        if line not in lines:
            lines.append(line)
    shown = "; ".join(lines[:_SHOWN]) + (f" (+{len(lines) - _SHOWN} more)" if len(lines) > _SHOWN else "")
    return 422, shown or "request body does not fit the API"


def create_app(
    target: Predictor | CanaryRouter,
    *,
    title: str = "AlphaOps serving",
    api_keys: Mapping[str, str] | Iterable[str] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
    routing_header: str | None = None,
    status: Mapping[str, Any] | None = None,
) -> FastAPI:
    """Build the FastAPI app. Handlers are sync, so FastAPI runs them in its thread pool.

    ``api_keys`` maps caller names to keys (or is a list of keys). ``status`` holds objects
    whose ``stats`` ``/health`` shows next to the models (e.g. the alias watcher, the log).
    """
    if max_body_bytes < 1 or max_batch_rows < 1:
        raise ValueError("max_body_bytes and max_batch_rows must be >= 1")
    keys = _key_table(api_keys)
    app = FastAPI(title=title, description=__doc__)
    app.add_middleware(_BodyLimit, limit=max_body_bytes)
    router = target if isinstance(target, CanaryRouter) else None
    bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
    header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: <API key>")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        code, detail = _validation_error(exc)
        return JSONResponse({"detail": detail}, status_code=code)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    def champion() -> Predictor:
        return router.champion if router is not None else target  # type: ignore[return-value]

    if keys:
        def caller(
            credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
            api_key: str | None = Depends(header),
        ) -> str | None:
            presented = credentials.credentials if credentials is not None else api_key
            if not presented:
                raise HTTPException(401, "missing API key: send 'Authorization: Bearer <key>' or "
                                    "'X-API-Key: <key>'", headers={"WWW-Authenticate": "Bearer"})
            digest, found = hashlib.sha256(presented.encode()).digest(), None
            for name, known in keys:  # every key is compared: the time does not tell which matched
                if hmac.compare_digest(known, digest):
                    found = name
            if found is None:
                raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "Bearer"})
            return found
    else:
        def caller() -> str | None:
            return None

    def routing_key(who: str | None, request: Request) -> str | None:
        if router is None:
            return None
        if who is None:  # no identity to trust: the server draws the arm for this request
            return secrets.token_hex(8)
        extra = request.headers.get(routing_header, "") if routing_header else ""
        return hashlib.sha256(f"{who}\0{extra}".encode()).hexdigest()

    secured = _error_responses(401) if keys else {}

    @app.post("/predict", responses={**_error_responses(400, 413, 422), **secured})
    def predict(req: PredictRequest, request: Request, who: str | None = Depends(caller)) -> dict[str, Any]:
        """Predict one row (``features``) or a batch (``rows``) with the served model."""
        if (req.features is None) == (req.rows is None):
            raise HTTPException(422, "give exactly one of 'features' (one row) or 'rows' (a batch)")
        if req.rows is not None:
            if not req.rows:
                raise HTTPException(422, "'rows' must be a non-empty list of rows (lists or objects)")
            if len(req.rows) > max_batch_rows:
                raise HTTPException(413, f"batch of {len(req.rows):,} rows is over the limit of "
                                    f"{max_batch_rows:,} (ALPHAOPS_SERVE_MAX_BATCH_ROWS)")
            if not champion().inputs.is_batch(req.rows):  # the rule predict() reads batches by
                raise HTTPException(422, "'rows' must be a non-empty list of rows (lists or objects)")
            x: Any = req.rows
        else:
            x = req.features
            if champion().inputs.is_batch(x):
                raise HTTPException(422, "'features' is one row of numbers; send a batch as 'rows'")
        try:
            if router is not None:
                res = router.predict(x, routing_key(who, request), fallback=req.fallback)
            else:
                res = target.predict(x, fallback=req.fallback)  # type: ignore[union-attr]
        except InputError as e:
            raise HTTPException(422, str(e)) from e
        return res.to_dict()

    @app.get("/health")
    def health() -> dict[str, Any]:
        """The served versions and counters (open without a key)."""
        extra: dict[str, Any] = {"auth": "api-keys" if keys else "none"}
        for label, obj in (status or {}).items():
            extra[label] = getattr(obj, "stats", obj)
        if router is None:
            return {"status": "ok", **_describe(champion()), **extra}
        challenger = router.challenger
        return {
            "status": "ok",
            "champion": _describe(router.champion),
            "challenger": None if challenger is None else _describe(challenger),
            "routing": router.stats,
            **extra,
        }

    @app.get("/schema", responses=secured)
    def schema(who: str | None = Depends(caller)) -> dict[str, Any]:
        """The champion's schema.json."""
        return champion().schema.to_dict()

    return app
