"""pattern_similarity: the estimator contract, out-of-sample votes against permuted outcomes,
ONNX parity, and serving's ``Predictor.similar`` on the bundle's library."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from models.families.pattern_similarity import PatternSimilarityModel
from models.onnx_export import run_onnx

WINDOW, N_FEATURES = 4, 6
SMALL = {"embedding_dim": 8, "hidden_size": 16, "k": 15, "epochs": 8, "batch_size": 64, "library_size": 300}
CLASS_NAMES = ("bearish", "neutral", "bullish")


def structured_windows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows whose outcome follows the mean of feature 0 over the window (plus noise)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, WINDOW, N_FEATURES)).astype(np.float32)
    X[..., 5] *= 100.0  # a feature on another scale: standardization must handle it
    signal = X[:, :, 0].mean(axis=1) + 0.2 * rng.standard_normal(n)
    y = np.digitize(signal, [-0.3, 0.3]).astype(np.int64)  # 0 bearish, 1 neutral, 2 bullish
    return X, y


@pytest.fixture(scope="module")
def data():
    X, y = structured_windows(700, seed=4)
    return X[:400], y[:400], X[400:], y[400:]


@pytest.fixture(scope="module")
def fitted(data):
    X, y, _, _ = data
    return PatternSimilarityModel(random_state=3, **SMALL).fit(X, y)


def test_sklearn_contract_and_bad_input(data):
    X, y, _, _ = data
    model = PatternSimilarityModel(**SMALL)
    with pytest.raises(NotFittedError):
        model.predict(X[:3])
    assert model.fit(X[:200], y[:200]) is model
    twin = clone(model)
    assert twin.get_params() == model.get_params() and not hasattr(twin, "scorer_")
    with pytest.raises(ValueError, match=r"\[N, window, n_features\]"):
        model.predict(X[:3, 0, :])
    with pytest.raises(ValueError, match="expected windows of shape"):
        model.predict(X[:3, :2, :])
    bad = X[:200].copy()
    bad[3, 1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        PatternSimilarityModel(**SMALL).fit(bad, y[:200])
    with pytest.raises(ValueError, match="k <= library_size"):
        PatternSimilarityModel(**{**SMALL, "k": 400}).fit(X[:200], y[:200])
    with pytest.raises(ValueError, match="two classes"):
        PatternSimilarityModel(**SMALL).fit(X[:200], np.zeros(200, dtype=np.int64))


def test_same_seed_same_votes(data, fitted):
    X, y, X_new, _ = data
    again = PatternSimilarityModel(random_state=3, **SMALL).fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(X_new), fitted.predict_proba(X_new))


def test_votes_are_shares_of_k_neighbours(data, fitted):
    _, _, X_new, _ = data
    votes = fitted.predict_proba(X_new)
    assert votes.shape == (len(X_new), 3)
    np.testing.assert_allclose(votes.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(votes * fitted.k, np.round(votes * fitted.k), atol=1e-4)  # counts out of k
    emb = fitted.embed(X_new)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_bullish_vote_carries_information_out_of_sample_and_permuted_outcomes_do_not(data, fitted):
    X, y, X_new, y_new = data
    real = roc_auc_score(y_new == 2, fitted.predict_proba(X_new)[:, 2])
    rng = np.random.default_rng(0)
    null = [roc_auc_score(y_new == 2, PatternSimilarityModel(random_state=3, **SMALL)
                          .fit(X, rng.permutation(y)).predict_proba(X_new)[:, 2]) for _ in range(3)]
    assert real > 0.7, real
    assert real > max(null) + 0.1, (real, null)
    assert all(abs(v - 0.5) < 0.15 for v in null), null


def test_onnx_matches_native(data, fitted):
    _, _, X_new, _ = data
    label, proba, embedding = run_onnx(fitted.to_onnx(), X_new)
    np.testing.assert_allclose(proba, fitted.predict_proba(X_new), atol=1e-5)
    np.testing.assert_allclose(embedding, fitted.embed(X_new), atol=1e-5)
    np.testing.assert_array_equal(label, np.argmax(proba, axis=1))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, fitted):
    from models.bundle import spec_schema, write_bundle
    from models.catalog import spec_by_name

    spec = spec_by_name("pattern_similarity_h1")
    names = [f"f{i}" for i in range(N_FEATURES)]
    schema = spec_schema(spec, feature_set_version="fs-test", features=names,
                         model={"name": "default.pattern_similarity_h1.TEST", "version": "1"})
    schema["window"] = WINDOW
    schema["input"]["shape"] = ["batch", WINDOW, N_FEATURES]
    schema.update(fitted.bundle_schema())
    return write_bundle(tmp_path_factory.mktemp("pattern") / "bundle", fitted.to_onnx(), schema)


def test_serving_similar_answers_with_the_bundles_library(data, fitted, bundle):
    import serving

    _, _, X_new, _ = data
    predictor = serving.Predictor.load(bundle)
    _, proba, _ = run_onnx((bundle / "model.onnx").read_bytes(), X_new[:20])
    for i in range(20):
        match = predictor.similar(X_new[i])  # k from the schema: the model's own k
        assert list(match.votes) == list(CLASS_NAMES)
        np.testing.assert_allclose([match.votes[c] for c in CLASS_NAMES], proba[i], atol=1e-6)
    match = predictor.similar(X_new[0].tolist(), k=5)
    assert len(match.neighbours) == 5 and match.name == "default.pattern_similarity_h1.TEST"
    similarities = [n.similarity for n in match.neighbours]
    assert similarities == sorted(similarities, reverse=True)
    # the nearest neighbour of a library window is itself
    own = fitted.library_rows_[7]
    X_train = data[0]
    assert predictor.similar(X_train[own], k=1).neighbours[0].row == 7
    assert predictor.similar(X_train[own], k=1).neighbours[0].distance == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(serving.InputError, match="k must be"):
        predictor.similar(X_new[0], k=0)
    with pytest.raises(serving.InputError, match="k must be"):
        predictor.similar(X_new[0], k=len(fitted.library_embeddings_) + 1)
    with pytest.raises(serving.InputError, match="one window"):
        predictor.similar(X_new[:2])
    with pytest.raises(serving.InputError):
        predictor.similar(X_new[0, :2])


def test_serving_similar_through_an_ivf_index(tmp_path, data, fitted, bundle):
    import json

    import serving
    from models.pattern_index import library_doc
    from serving.integrity import seal

    _, _, X_new, _ = data
    doc = json.loads((bundle / "schema.json").read_text())
    doc.pop("integrity")
    assert "ivf" not in doc["pattern_library"]  # 300 windows: searched exactly
    doc["pattern_library"] = library_doc(fitted.library_embeddings_, fitted.classes_[fitted.library_outcomes_],
                                         fitted.classes_, k=fitted.k, ivf=True, n_lists=8)
    indexed = tmp_path / "indexed"
    indexed.mkdir()
    onnx_bytes = (bundle / "model.onnx").read_bytes()
    (indexed / "model.onnx").write_bytes(onnx_bytes)
    (indexed / "schema.json").write_text(json.dumps(seal(doc, onnx_bytes, sealed_by="test")))
    plain, ivf = serving.Predictor.load(bundle), serving.Predictor.load(indexed)
    _, proba, _ = run_onnx(onnx_bytes, X_new[:5])
    for i in range(5):
        exact = ivf.similar(X_new[i], exact=True)
        np.testing.assert_allclose([exact.votes[c] for c in CLASS_NAMES], proba[i], atol=1e-6)
        every_list = ivf.similar(X_new[i], k=10, nprobe=8)
        assert [n.row for n in every_list.neighbours] == [n.row for n in plain.similar(X_new[i], k=10).neighbours]
        assert len(ivf.similar(X_new[i], k=10).neighbours) == 10  # the calibrated nprobe
    with pytest.raises(serving.InputError, match="nprobe"):
        ivf.similar(X_new[0], nprobe=9)


def test_a_bundle_without_library_does_not_answer_similar(tmp_path, fitted, bundle):
    import json

    import serving
    from serving.integrity import seal

    doc = json.loads((bundle / "schema.json").read_text())
    doc.pop("pattern_library")
    doc.pop("integrity")
    plain = tmp_path / "plain"
    plain.mkdir()
    data = (bundle / "model.onnx").read_bytes()
    (plain / "model.onnx").write_bytes(data)
    (plain / "schema.json").write_text(json.dumps(seal(doc, data, sealed_by="test")))
    with pytest.raises(serving.BundleError, match="no 'pattern_library'"):
        serving.Predictor.load(plain).similar(np.zeros((WINDOW, N_FEATURES)))


def test_base_rate_rule_gives_training_shares_and_auc_one_half():
    import pandas as pd

    from models.naive import NaiveContext, naive_predictions
    from models.metrics import primary_score
    from models.catalog import spec_by_name

    y = np.array([0, 0, 1, 2, 2, 2, 1, 0, 2, 1, 0, 2])
    ctx = NaiveContext(bars=pd.DataFrame(), index=pd.DatetimeIndex([]), y=y, X=np.zeros((12, 1)),
                       feature_names=["f"], train_idx=np.arange(8), holdout_idx=np.arange(8, 12), horizon=1)
    rule = naive_predictions("pattern_similarity", ctx)["base_rate"]
    np.testing.assert_allclose(rule, np.tile([3 / 8, 2 / 8, 3 / 8], (4, 1)))
    assert primary_score(spec_by_name("pattern_similarity_h1"), y[8:], rule) == pytest.approx(0.5)
