"""REST endpoint over a :class:`~serving.Predictor` or :class:`~serving.CanaryRouter`.

Needs fastapi (not imported by ``serving/__init__``)::

    from serving import Predictor
    from serving.http import create_app
    app = create_app(Predictor.load("bundle_dir"))   # then: uvicorn module:app

``POST /predict`` takes ``{"features": {...}}`` (or a list in schema order) or
``{"rows": [[...], ...]}``, plus optional ``"key"`` (canary routing key) and ``"fallback"``.
For a sequence model, ``features`` is one window (``{"feature": [oldest, ..., latest]}`` or a
list of time steps) and ``rows`` a list of windows.
``GET /health`` and ``GET /schema`` describe the served model(s). An invalid input answers
HTTP 422 with the :class:`~serving.InputError` message in ``detail``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from serving.errors import InputError
from serving.predictor import Predictor
from serving.router import CanaryRouter


class PredictRequest(BaseModel):
    """Exactly one of ``features`` (one row) or ``rows`` (a batch)."""

    features: dict[str, Any] | list[Any] | None = Field(
        default=None,
        description="One row: {feature: value} or values in schema order. Sequence models: "
        "one window, {feature: [oldest, ..., latest]} or a list of time steps.",
    )
    rows: list[Any] | None = Field(
        default=None,
        description="A batch: a list of rows (lists in schema order, or dicts); of windows "
        "for sequence models.",
    )
    key: str | None = Field(default=None, description="Canary routing key (sticky per key).")
    fallback: bool | None = Field(
        default=None, description="Answer invalid rows with the schema's fallback rule."
    )


def _describe(p: Predictor) -> dict[str, Any]:
    return {"model": p.name, "version": p.version, "task": p.task, "stats": p.stats}


def create_app(target: Predictor | CanaryRouter, *, title: str = "AlphaOps serving") -> FastAPI:
    """Build the FastAPI app. Handlers are sync, so FastAPI runs them in its thread pool."""
    app = FastAPI(title=title, description=__doc__)
    router = target if isinstance(target, CanaryRouter) else None

    def champion() -> Predictor:
        return router.champion if router is not None else target  # type: ignore[return-value]

    @app.post("/predict")
    def predict(req: PredictRequest) -> dict[str, Any]:
        if (req.features is None) == (req.rows is None):
            raise HTTPException(422, "give exactly one of 'features' (one row) or 'rows' (a batch)")
        if req.rows is not None:
            if not req.rows or not all(isinstance(r, (list, dict)) for r in req.rows):
                raise HTTPException(
                    422, "'rows' must be a non-empty list of rows (lists or objects)"
                )
            x: Any = req.rows
        else:
            x = req.features
            nested = isinstance(x, list) and any(isinstance(v, (list, dict)) for v in x)
            if nested and not champion().window:  # a window is a list of time steps
                raise HTTPException(422, "'features' is one row of numbers; send a batch as 'rows'")
        try:
            if router is not None:
                res = router.predict(x, req.key, fallback=req.fallback)
            else:
                res = target.predict(x, fallback=req.fallback)  # type: ignore[union-attr]
        except InputError as e:
            raise HTTPException(422, str(e)) from e
        return res.to_dict()

    @app.get("/health")
    def health() -> dict[str, Any]:
        if router is None:
            return {"status": "ok", **_describe(champion())}
        challenger = router.challenger
        return {
            "status": "ok",
            "champion": _describe(router.champion),
            "challenger": None if challenger is None else _describe(challenger),
            "routing": router.stats,
        }

    @app.get("/schema")
    def schema() -> dict[str, Any]:
        return champion().schema.to_dict()

    return app
