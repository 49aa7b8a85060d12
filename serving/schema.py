"""Parse and check ``schema.json`` (see docs/bundle.md). Pure Python: no numpy, no onnxruntime."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import operator
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from serving.errors import BundleError, name_list

SCHEMA_VERSION = 1
TASKS = ("classifier", "regressor", "anomaly", "multi")
# Tasks whose ``value`` outputs are extras next to the task's own fields.
EXTRAS_TASKS = ("classifier", "anomaly")
OUTPUT_KINDS = ("label", "probabilities", "value", "score")
OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _fail(msg: str) -> BundleError:
    return BundleError(f"schema.json: {msg}")


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclasses.dataclass(frozen=True, slots=True)
class OutputSpec:
    """One declared model output: ONNX output ``name``, its ``kind`` and its ``meaning``. The
    key of a ``value`` output in results (``multi`` outputs, classifier and anomaly extras) is
    its meaning, else its name."""

    name: str
    kind: str
    meaning: str | None = None

    @property
    def key(self) -> str:
        return self.meaning or self.name


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """``when`` holds (feature, op symbol, op, threshold); every condition must hold."""

    when: tuple[tuple[str, str, Callable[[float, float], bool], float], ...]
    output: Mapping[str, Any]

    def matches(self, values: Mapping[str, float]) -> bool:
        for feature, _sym, op, threshold in self.when:
            v = values.get(feature)
            if v is None or not op(v, threshold):
                return False
        return True


@dataclasses.dataclass(frozen=True, slots=True)
class Fallback:
    """The schema's rule-based fallback. ``answer`` takes the *valid* feature values of a row
    (an invalid or missing feature is simply absent, so a rule that needs it does not match)
    and returns the normalised output of the first matching rule, else ``default``."""

    rules: tuple[Rule, ...]
    default: Mapping[str, Any]

    def answer(self, values: Mapping[str, float]) -> Mapping[str, Any]:
        for rule in self.rules:
            if rule.matches(values):
                return rule.output
        return self.default


@dataclasses.dataclass(frozen=True, slots=True)
class Schema:
    """A parsed, structurally checked ``schema.json``. Checking it against the ONNX graph is
    done by the predictor at load time.

    ``window`` is 0 for a model on one feature vector per row (input ``[N, n_features]``), or
    the number of time steps of a sequence model (input ``[N, window, n_features]``).
    ``extras`` are the ``value`` outputs of a classifier or anomaly model, returned next to
    the task's own fields. Keys the runtime does not use are kept in ``raw``."""

    model_name: str
    model_version: str
    features: tuple[str, ...]
    input_name: str
    task: str
    outputs: tuple[OutputSpec, ...]
    classes: tuple[int | str, ...] | None
    class_names: tuple[str, ...] | None
    thresholds: Mapping[str, float]
    fallback: Fallback | None
    feature_set_version: str | None
    raw: Mapping[str, Any]
    window: int = 0
    extras: tuple[OutputSpec, ...] = ()

    def outputs_of(self, kind: str) -> tuple[OutputSpec, ...]:
        return tuple(o for o in self.outputs if o.kind == kind)

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the JSON document."""
        return copy.deepcopy(dict(self.raw))

    @classmethod
    def read(cls, path: str | Path) -> Schema:
        """Read and check ``schema.json`` (a file, or a bundle directory holding one)."""
        p = Path(path)
        if p.is_dir():
            p = p / "schema.json"
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise BundleError(f"schema.json not found at {p}") from e
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise BundleError(f"schema.json at {p} is not valid JSON: {e}") from e
        return cls.from_dict(doc)

    @classmethod
    def from_dict(cls, doc: Any) -> Schema:
        if not isinstance(doc, dict):
            raise _fail("top level must be an object")
        if doc.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise _fail(f"unsupported schema_version {doc.get('schema_version')!r}")
        model = doc.get("model")
        if not isinstance(model, dict) or not isinstance(model.get("name"), str):
            raise _fail("'model.name' is required")
        if model.get("version") is None:
            raise _fail("'model.version' is required")
        features = doc.get("features")
        if (
            not isinstance(features, list)
            or not features
            or not all(isinstance(f, str) and f for f in features)
            or len(set(features)) != len(features)
        ):
            raise _fail("'features' must be a non-empty list of unique, non-empty strings")
        inp = doc.get("input") or {}
        if not isinstance(inp, dict) or not isinstance(inp.get("name"), str):
            raise _fail("'input.name' is required")
        if inp.get("dtype", "float32") != "float32":
            raise _fail(f"input dtype must be float32, got {inp.get('dtype')!r}")
        window = _parse_window(doc, inp, len(features))
        task = doc.get("task")
        if task not in TASKS:
            raise _fail(f"'task' must be one of {TASKS}, got {task!r}")

        outputs = _parse_outputs(doc.get("outputs"), task)
        classes = class_names = None
        if task == "classifier":
            classes, class_names = _parse_classes(doc)
        thresholds = doc.get("thresholds") or {}
        if not isinstance(thresholds, dict) or not all(
            isinstance(k, str) and _is_num(v) for k, v in thresholds.items()
        ):
            raise _fail("'thresholds' must map names to finite numbers")
        if (
            task == "anomaly"
            and not any(o.kind == "label" for o in outputs)
            and ("anomaly_score" not in thresholds)
        ):
            raise _fail("anomaly: needs a 'label' output or thresholds.anomaly_score")

        schema = cls(
            model_name=model["name"],
            model_version=str(model["version"]),
            features=tuple(features),
            input_name=inp["name"],
            task=task,
            outputs=outputs,
            classes=classes,
            class_names=class_names,
            thresholds=dict(thresholds),
            fallback=None,
            feature_set_version=doc.get("feature_set_version"),
            raw=copy.deepcopy(doc),
            window=window,
            extras=tuple(o for o in outputs if o.kind == "value") if task in EXTRAS_TASKS else (),
        )
        fb = doc.get("fallback")
        if fb is not None:
            schema = dataclasses.replace(schema, fallback=_parse_fallback(fb, schema))
        return schema


def _parse_outputs(outputs: Any, task: str) -> tuple[OutputSpec, ...]:
    if not isinstance(outputs, list) or not outputs:
        raise _fail("'outputs' must be a non-empty list")
    specs = []
    for o in outputs:
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            raise _fail(f"each output needs a 'name': {o!r}")
        if o.get("kind") not in OUTPUT_KINDS:
            raise _fail(f"output {o['name']!r}: 'kind' must be one of {OUTPUT_KINDS}")
        meaning = o.get("meaning")
        if meaning is not None and not isinstance(meaning, str):
            raise _fail(f"output {o['name']!r}: 'meaning' must be a string")
        specs.append(OutputSpec(o["name"], o["kind"], meaning))
    kinds = [s.kind for s in specs]
    required = {
        "classifier": ("probabilities",),
        "regressor": ("value",),
        "anomaly": ("score",),
        "multi": ("value",),
    }[task]
    for k in required:
        if k not in kinds:
            raise _fail(f"task {task!r} needs an output of kind {k!r}")
    for k in set(kinds):
        several_ok = task == "multi" or (k == "value" and task in EXTRAS_TASKS)
        if not several_ok and kinds.count(k) > 1:
            raise _fail(f"task {task!r} allows one output of kind {k!r}")
    keys = [s.key for s in specs if s.kind == "value"]
    if len(set(keys)) != len(keys):
        raise _fail(f"{task}: the meanings of 'value' outputs must be unique")
    return tuple(specs)


def _parse_window(doc: dict, inp: dict, n_features: int) -> int:
    """The sequence window (0 for a tabular model) from ``window`` and ``input.shape``."""
    window = doc.get("window")
    bad = not isinstance(window, int) or isinstance(window, bool) or window < 1
    if window is not None and bad:
        raise _fail(f"'window' must be a positive integer, got {window!r}")
    shape = inp.get("shape")
    if shape is None:
        return window or 0
    if not isinstance(shape, list) or len(shape) not in (2, 3):
        raise _fail(
            "'input.shape' must be [batch, n_features] or [batch, window, n_features], "
            f"got {shape!r}"
        )
    if isinstance(shape[-1], int) and shape[-1] != n_features:
        raise _fail(f"'input.shape' {shape} does not end in len(features) = {n_features}")
    if len(shape) == 2:
        if window is not None:
            raise _fail(f"'window' is {window} but 'input.shape' {shape} has no time axis")
        return 0
    steps = shape[1]
    if window is None:
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise _fail(f"'input.shape' {shape} needs a fixed window length (or set 'window')")
        return steps
    if isinstance(steps, int) and steps != window:
        raise _fail(f"'window' is {window} but 'input.shape' {shape} has {steps} time steps")
    return window


def _parse_classes(doc: dict) -> tuple[tuple[int | str, ...], tuple[str, ...]]:
    classes = doc.get("classes")
    if (
        not isinstance(classes, list)
        or len(classes) < 2
        or not (
            all(isinstance(c, int) and not isinstance(c, bool) for c in classes)
            or all(isinstance(c, str) for c in classes)
        )
        or len(set(classes)) != len(classes)
    ):
        raise _fail("classifier: 'classes' must be >= 2 unique ints or strings")
    names = doc.get("class_names")
    if names is None:
        names = [str(c) for c in classes]
    if (
        not isinstance(names, list)
        or len(names) != len(classes)
        or not all(isinstance(n, str) for n in names)
    ):
        raise _fail("classifier: 'class_names' must be strings, one per class")
    return tuple(classes), tuple(names)


def _parse_fallback(fb: Any, schema: Schema) -> Fallback:
    if not isinstance(fb, dict) or fb.get("kind") != "rule":
        raise _fail("fallback: must be null or {'kind': 'rule', ...}")
    rules_doc = fb.get("rules", [])
    if not isinstance(rules_doc, list):
        raise _fail("fallback: 'rules' must be a list")
    if "default" not in fb:
        raise _fail("fallback: 'default' is required")
    known = set(schema.features)
    rules = []
    for i, r in enumerate(rules_doc):
        if not isinstance(r, dict) or not isinstance(r.get("when", []), list):
            raise _fail(f"fallback rule {i}: must be an object with a 'when' list")
        conds = []
        for c in r.get("when", []):
            if not (isinstance(c, list) and len(c) == 3):
                raise _fail(f"fallback rule {i}: condition {c!r} must be [feature, op, number]")
            feat, sym, thr = c
            if feat not in known:
                raise _fail(f"fallback rule {i}: unknown feature {feat!r}")
            if sym not in OPS:
                raise _fail(f"fallback rule {i}: operator {sym!r} not in {tuple(OPS)}")
            if not _is_num(thr):
                raise _fail(f"fallback rule {i}: threshold {thr!r} must be a finite number")
            conds.append((feat, sym, OPS[sym], float(thr)))
        rules.append(Rule(tuple(conds), _fallback_output(r.get("output"), schema, f"rule {i}")))
    return Fallback(tuple(rules), _fallback_output(fb["default"], schema, "default"))


def _fallback_output(out: Any, schema: Schema, where: str) -> Mapping[str, Any]:
    """Normalise a rule's ``output`` to the full set of result fields of the task."""
    if not isinstance(out, dict):
        raise _fail(f"fallback {where}: 'output' must be an object")

    def num(key: str, default: float | None = None) -> float:
        v = out.get(key, default)
        if not _is_num(v):
            raise _fail(f"fallback {where}: {key!r} must be a finite number, got {v!r}")
        return float(v)

    def num_or_vector(key: str) -> float | tuple[float, ...]:
        v = out.get(key)
        if isinstance(v, list) and v and all(_is_num(e) for e in v):
            return tuple(float(e) for e in v)
        return num(key)

    # extras (classifier / anomaly value outputs) are unknown (None) unless the rule sets them
    extras = {o.key: num_or_vector(o.key) if o.key in out else None for o in schema.extras}
    if schema.task == "classifier":
        assert schema.classes is not None and schema.class_names is not None
        label = out.get("label")
        if label not in schema.classes or isinstance(label, bool):
            raise _fail(f"fallback {where}: 'label' must be one of {list(schema.classes)}")
        idx = schema.classes.index(label)
        return {
            "label": label,
            "class_name": schema.class_names[idx],
            "confidence": num("confidence", 0.0),
            "extras": extras,
        }
    if schema.task == "regressor":
        return {"value": num("value")}
    if schema.task == "anomaly":
        if not isinstance(out.get("is_anomaly"), bool):
            raise _fail(f"fallback {where}: 'is_anomaly' must be true or false")
        return {"is_anomaly": out["is_anomaly"], "score": num("score"), "extras": extras}
    return {o.key: num_or_vector(o.key) for o in schema.outputs_of("value")}


def _signature(s: Schema) -> dict[str, Any]:
    """The contract a running caller relies on; a reload must not change it silently."""
    return {
        "features": s.features,
        "feature_set_version": s.feature_set_version,
        "task": s.task,
        "classes": s.classes,
        "class_names": s.class_names,
        "window": s.window,
        "outputs": tuple(sorted((o.kind, o.key) for o in s.outputs)),
        "extras": tuple(sorted(o.key for o in s.extras)),
    }


def check_compatible(old: Schema, new: Schema) -> None:
    """Raise :class:`BundleError` naming what differs when ``new`` changes the contract of
    ``old``: features or their order, feature-set version, task, classes or class names,
    window, outputs or extras."""
    a, b = _signature(old), _signature(new)
    diffs = [k for k in a if a[k] != b[k]]
    if not diffs:
        return
    details = []
    if "features" in diffs:
        added = [f for f in b["features"] if f not in set(a["features"])]
        removed = [f for f in a["features"] if f not in set(b["features"])]
        parts = []
        if added:
            parts.append(f"added {name_list(added)}")
        if removed:
            parts.append(f"removed {name_list(removed)}")
        details.append("features " + (", ".join(parts) if parts else "reordered"))
    for k in diffs:
        if k != "features":
            details.append(f"{k} {a[k]!r} -> {b[k]!r}")
    raise BundleError(
        f"bundle {new.model_name}@{new.model_version} is schema-incompatible with "
        f"{old.model_name}@{old.model_version}: {'; '.join(details)} "
        "(pass allow_schema_change=True to accept)"
    )
