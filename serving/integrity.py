"""The seal that binds ``schema.json`` to ``model.onnx`` (see docs/bundle.md, "The seal").

Standard library only. A sealed ``schema.json`` carries an ``integrity`` block::

    "integrity": {
      "version": 1,
      "model_sha256": "<sha256 of the model.onnx bytes>",
      "graph": {"input": {"name": "input", "shape": [null, 60]}, "outputs": ["label", "probabilities"]},
      "n_features": 60,
      "features_sorted_sha256": "<digest of the sorted feature names>",
      "fields": {"features": "<digest>", "feature_set_version": "<digest>", ...},
      "schema_sha256": "<digest of (model_sha256, graph, n_features, features_sorted_sha256, fields)>",
      "sealed_by": "train"
    }

``fields`` holds one digest per top-level key of the schema (``model`` without its ``name``
and ``version``, which the registry fills in when the version is exported); a digest is the
SHA-256 of the value's canonical JSON (:func:`canonical`). ``schema_sha256`` signs the rest of
the block, so an edited digest is caught too. This detects a replaced ``model.onnx``, a schema
of another model, and any edit of the schema's contract (features and their order, feature-set
version, classes, outputs, thresholds, fallback) made after sealing. It does not stop someone
who rewrites both files and recomputes every digest: that needs a signature with a secret key.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from serving.errors import BundleError

INTEGRITY_VERSION = 1
INTEGRITY_KEY = "integrity"
# Set by the registry when a version is exported (the version is known only once registered).
_UNSEALED_MODEL_KEYS = ("name", "version")


class UnsealedBundleError(BundleError):
    """``schema.json`` has no ``integrity`` block (a bundle written before sealing existed)."""


def canonical(value: Any) -> bytes:
    """The canonical JSON bytes a digest is taken of: sorted keys, no whitespace, ASCII."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sealed_fields(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The schema's top-level keys as sealed: no ``integrity``, ``model`` without name/version."""
    fields = {k: v for k, v in doc.items() if k != INTEGRITY_KEY}
    model = fields.get("model")
    if isinstance(model, Mapping):
        fields["model"] = {k: v for k, v in model.items() if k not in _UNSEALED_MODEL_KEYS}
    return fields


def _digests(doc: Mapping[str, Any]) -> dict[str, str]:
    try:
        return {k: sha256_hex(canonical(v)) for k, v in _sealed_fields(doc).items()}
    except ValueError as e:  # NaN / infinity in the schema
        raise BundleError(f"schema.json cannot be sealed: {e}") from e


def _features_sorted(doc: Mapping[str, Any]) -> str:
    features = doc.get("features")
    return sha256_hex(canonical(sorted(features) if isinstance(features, list) else features))


def _block_digest(block: Mapping[str, Any]) -> str:
    signed = {k: block.get(k) for k in ("version", "model_sha256", "graph", "n_features",
                                         "features_sorted_sha256", "fields")}
    return sha256_hex(canonical(signed))


def seal(doc: Mapping[str, Any], model_bytes: bytes, *, graph: Mapping[str, Any] | None = None,
         sealed_by: str = "train") -> dict[str, Any]:
    """A copy of ``doc`` with its ``integrity`` block for ``model_bytes`` (replacing any old one).

    ``graph`` is the ONNX graph's signature (:func:`models.bundle.graph_signature`): its input
    name and shape and its output names, checked against the session when the bundle loads.
    """
    try:  # the form it has on disk: tuples become lists, numpy floats plain floats
        out = json.loads(json.dumps({k: v for k, v in doc.items() if k != INTEGRITY_KEY}))
    except (TypeError, ValueError) as e:
        raise BundleError(f"schema.json cannot be sealed: {e}") from e
    features = out.get("features")
    block: dict[str, Any] = {
        "version": INTEGRITY_VERSION,
        "model_sha256": sha256_hex(model_bytes),
        "graph": copy.deepcopy(dict(graph)) if graph is not None else None,
        "n_features": len(features) if isinstance(features, list) else None,
        "features_sorted_sha256": _features_sorted(out),
        "fields": _digests(out),
    }
    block["schema_sha256"] = _block_digest(block)
    block["sealed_by"] = sealed_by
    out[INTEGRITY_KEY] = block
    return out


def verify(doc: Mapping[str, Any], model_bytes: bytes, *, where: str = "bundle") -> dict[str, Any]:
    """Check that ``doc`` (a parsed schema.json) is sealed to ``model_bytes``; return the block.

    Raises :class:`UnsealedBundleError` when there is no seal, :class:`BundleError` naming the
    mismatch otherwise.
    """
    block = doc.get(INTEGRITY_KEY)
    if block is None:
        raise UnsealedBundleError(
            f"{where}: schema.json is not sealed to its model.onnx (no 'integrity' block: a bundle "
            "written before bundles were sealed); re-export it with `alphaops export NAME@VERSION DIR`, "
            "which seals it from the registry, or load it with allow_unsealed=True")
    if not isinstance(block, Mapping) or block.get("version") != INTEGRITY_VERSION or not isinstance(
            block.get("fields"), Mapping) or not isinstance(block.get("model_sha256"), str):
        raise BundleError(f"{where}: schema.json has a malformed 'integrity' block "
                          f"(expected version {INTEGRITY_VERSION} with model_sha256 and fields)")
    actual = sha256_hex(model_bytes)
    if actual != block["model_sha256"]:
        raise BundleError(
            f"{where}: model.onnx does not match schema.json: its sha256 is {actual[:16]}…, the schema "
            f"was sealed for {str(block['model_sha256'])[:16]}… (model.onnx was replaced, or schema.json "
            "belongs to another model)")
    sealed, now = dict(block["fields"]), _digests(doc)
    changed = sorted(k for k in set(sealed) | set(now) if sealed.get(k) != now.get(k))
    if changed:
        raise BundleError(f"{where}: schema.json was edited after it was sealed: "
                          f"{'; '.join(_describe(k, doc, block, sealed, now) for k in changed)}")
    if block.get("schema_sha256") != _block_digest(block):
        raise BundleError(f"{where}: schema.json's integrity block was edited (its schema_sha256 "
                          "does not match the digests it lists)")
    return dict(block)


def _describe(key: str, doc: Mapping[str, Any], block: Mapping[str, Any], sealed: Mapping[str, str],
              now: Mapping[str, str]) -> str:
    if key not in now:
        return f"'{key}' was removed"
    if key not in sealed:
        return f"'{key}' was added"
    if key == "features":
        features = doc.get("features")
        n = len(features) if isinstance(features, list) else None
        if n != block.get("n_features"):
            return f"'features' lists {n} names, the model was sealed with {block.get('n_features')}"
        if _features_sorted(doc) == block.get("features_sorted_sha256"):
            return "'features' are in another order than the model was trained on"
        return "'features' names differ from the sealed ones"
    return f"'{key}' differs from the sealed value"


def read_bundle(directory: str | Path) -> tuple[dict[str, Any], bytes]:
    """(schema.json parsed, model.onnx bytes) of a bundle directory; BundleError if unreadable."""
    d = Path(directory)
    try:
        doc = json.loads((d / "schema.json").read_text(encoding="utf-8"))
        data = (d / "model.onnx").read_bytes()
    except FileNotFoundError as e:
        raise BundleError(f"{d}: {Path(e.filename).name if e.filename else 'a file'} not found") from e
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise BundleError(f"{d}: cannot read the bundle: {e}") from e
    if not isinstance(doc, dict):
        raise BundleError(f"{d}: schema.json must hold an object")
    return doc, data


def verify_bundle(directory: str | Path) -> dict[str, Any]:
    """Verify the seal of a bundle directory without loading the model; returns the block."""
    doc, data = read_bundle(directory)
    return verify(doc, data, where=str(directory))


def seal_bundle(directory: str | Path, *, graph: Mapping[str, Any] | None = None,
                sealed_by: str = "export") -> dict[str, Any]:
    """Seal a bundle directory in place (schema.json is rewritten atomically); returns the schema."""
    d = Path(directory)
    doc, data = read_bundle(d)
    sealed = seal(doc, data, graph=graph, sealed_by=sealed_by)
    write_schema(d / "schema.json", sealed)
    return sealed


def write_schema(path: Path, doc: Mapping[str, Any]) -> None:
    """Write schema.json through a temporary file and a rename (never half-written)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(path)


def check_graph(graph: Mapping[str, Any] | None, inputs: list[tuple[str, list[Any]]],
                outputs: list[str], *, where: str = "bundle") -> None:
    """Compare the sealed graph signature with the session's (input name and shape, outputs)."""
    if graph is None:
        return

    def dims(shape: Any) -> list[int | None]:
        return [d if isinstance(d, int) and not isinstance(d, bool) and d > 0 else None for d in shape or []]

    def show(name: Any, shape: Any) -> str:
        return f"{name!r} [{', '.join('N' if d is None else str(d) for d in dims(shape))}]"

    sealed_in = graph.get("input") or {}
    if len(inputs) != 1:
        raise BundleError(f"{where}: model.onnx has {len(inputs)} inputs, its seal records one")
    name, shape = inputs[0]
    if name != sealed_in.get("name") or dims(shape) != dims(sealed_in.get("shape")):
        raise BundleError(f"{where}: model.onnx's graph does not match its seal: input {show(name, shape)}, "
                          f"sealed {show(sealed_in.get('name'), sealed_in.get('shape'))}")
    sealed_out = list(graph.get("outputs") or [])
    if sorted(outputs) != sorted(sealed_out):
        raise BundleError(f"{where}: model.onnx's graph does not match its seal: outputs {sorted(outputs)}, "
                          f"sealed {sorted(sealed_out)}")
