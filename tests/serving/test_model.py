"""LoadedModel: the session as designed, and the load-time checks of a bundle."""

from __future__ import annotations

import pytest
from serving_bundles import FEATURES, reseal

from serving import BundleError, Predictor


def test_load_sets_up_session_as_designed(clf: Predictor) -> None:
    assert (clf.name, clf.version, clf.task) == ("default.direction.SPX.1d", "1", "classifier")
    assert clf.features == tuple(FEATURES)
    assert clf.session.get_providers() == ["CPUExecutionProvider"]
    opts = clf.session.get_session_options()
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (1, 1)
    p2 = Predictor(clf.path, intra_op_num_threads=2)
    assert p2.session.get_session_options().intra_op_num_threads == 2


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s["input"].update(name="x"), "is not the graph's input 'input'"),
        (lambda s: s.update(features=FEATURES[:59]), "lists 59 features but the graph input"),
        (
            lambda s: s["outputs"].append({"name": "nope", "kind": "score"}),
            "'nope' is not a graph output",
        ),
        (lambda s: s.update(classes=[0, 1, 2], class_names=["a", "b", "c"]), "3 classes"),
        (lambda s: s.update(task="ranker"), "'task' must be one of"),
        (lambda s: s.update(features=FEATURES[:-1] + ["f00"]), "unique"),
        (
            lambda s: s["fallback"]["rules"][0]["when"][0].__setitem__(0, "zzz"),
            "unknown feature 'zzz'",
        ),
        (lambda s: s["fallback"]["rules"][0]["when"][0].__setitem__(1, "=="), "operator '=='"),
        (lambda s: s["fallback"]["default"].update(label=5), "'label' must be one of"),
        (lambda s: s["input"].update(dtype="float64"), "float32"),
    ],
)
def test_load_refuses_schema_that_does_not_match_graph(
    bundle_copy, clf_bundle, edit, message
) -> None:
    with pytest.raises(BundleError, match=message):
        Predictor.load(bundle_copy(clf_bundle, edit=edit))


def test_load_refuses_missing_or_corrupt_files(bundle_copy, clf_bundle, tmp_path) -> None:
    with pytest.raises(BundleError, match="not found"):
        Predictor.load(tmp_path / "nothing")
    broken = bundle_copy(clf_bundle, "broken")
    (broken / "model.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(BundleError, match="model.onnx does not match schema.json"):
        Predictor.load(broken)  # the seal refuses it before onnxruntime parses it
    with pytest.raises(BundleError, match="cannot be loaded"):
        Predictor.load(reseal(broken))  # sealed that way: onnxruntime refuses it
    bad_json = bundle_copy(clf_bundle, "bad_json")
    (bad_json / "schema.json").write_text("{")
    with pytest.raises(BundleError, match="not valid JSON"):
        Predictor.load(bad_json)
    no_model = bundle_copy(clf_bundle, "no_model")
    (no_model / "model.onnx").unlink()
    with pytest.raises(BundleError, match="model.onnx not found"):
        Predictor.load(no_model)
