"""Scale: synthetic data, chunked loading, approximate retrieval and incremental fold-in."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from cli_helpers import run
from whyrec.bundle import Bundle
from whyrec.data.chunked import read_interactions_chunked
from whyrec.data.dataset import Dataset
from whyrec.data.loaders import load_dataset
from whyrec.data.synth import SynthConfig, interaction_blocks, item_table, write_synthetic
from whyrec.engine import Engine
from whyrec.errors import DataError, NotFoundError, WhyrecError
from whyrec.filters import ItemFilter
from whyrec.models import BPR, IALS, ItemKNN, RelMF
from whyrec.retrieval import ANNIndex, EmbeddingSpace, exact_top_k, recall_at_k

SHAPE = SynthConfig(users=400, items=300, interactions=12_000, seed=5, block_users=150)


@pytest.fixture(scope="module")
def synth_frame() -> pd.DataFrame:
    return pd.concat(list(interaction_blocks(SHAPE)), ignore_index=True)


# ----- synthetic data ---------------------------------------------------------------------
def test_synth_has_the_requested_size_and_no_repeated_pairs(synth_frame):
    assert len(synth_frame) == SHAPE.interactions
    assert not synth_frame.duplicated(["user_id", "item_id"]).any()
    assert synth_frame["user_id"].nunique() == SHAPE.users
    assert synth_frame["item_id"].between(1, SHAPE.items).all()
    assert synth_frame["rating"].between(1, 5).all()


def test_synth_is_seeded(synth_frame):
    again = pd.concat(list(interaction_blocks(SHAPE)), ignore_index=True)
    pd.testing.assert_frame_equal(synth_frame, again)
    other = pd.concat(list(interaction_blocks(SHAPE.model_copy(update={"seed": 6}))))
    assert not other.reset_index(drop=True).equals(synth_frame)


def test_synth_popularity_and_activity_are_heavy_tailed(synth_frame):
    items = synth_frame["item_id"].value_counts()
    users = synth_frame["user_id"].value_counts()
    top_share = items.iloc[: SHAPE.items // 20].sum() / len(synth_frame)
    assert top_share > 0.15, "the top 5% of items should draw well over 5% of interactions"
    assert users.max() > 4 * users.median()


def mean_genre_entropy(config: SynthConfig) -> float:
    """Mean entropy of the primary genres of each active user's items."""
    frame = pd.concat(list(interaction_blocks(config)), ignore_index=True)
    genres = item_table(config).set_index("item_id")["genres"].str.split("|").str[0]
    merged = frame.assign(genre=frame["item_id"].map(genres))
    counts = merged.groupby("user_id")["genre"].value_counts()
    shares = counts / counts.groupby(level=0).transform("sum")
    entropy = (-shares * np.log(shares)).groupby(level=0).sum()
    active = merged["user_id"].value_counts()
    return float(entropy.loc[active[active >= 20].index].mean())


def test_synth_attributes_carry_the_taste_signal():
    """Users' genres are more concentrated than when only popularity chooses (affinity 0)."""
    tasteless = SHAPE.model_copy(update={"affinity": 0.0})
    assert mean_genre_entropy(SHAPE) < mean_genre_entropy(tasteless) - 0.1


def test_synth_timestamps_fall_in_the_activity_window(synth_frame):
    assert synth_frame["timestamp"].between(1_300_000_000, 1_300_000_000 + 8 * 365 * 86_400).all()


def test_synth_rejects_impossible_shapes():
    with pytest.raises(ValidationError):
        SynthConfig(users=10, items=4, interactions=100)
    with pytest.raises(ValidationError):
        SynthConfig(users=100, items=50, interactions=10)


def test_synth_cli_writes_loadable_data_and_one_line_errors(tmp_path, capsys):
    out = tmp_path / "synth"
    code, stdout, _ = run(
        capsys,
        *("data", "synth", "--users", "60", "--items", "40", "--interactions", "900"),
        *("--out", str(out), "--seed", "2"),
    )
    assert code == 0 and "900 interactions" in stdout
    dataset = load_dataset(out)
    assert len(dataset) == 900 and dataset.n_items == 40
    assert set(dataset.catalog.fields) == {"genres", "decade", "mood"}
    code, _, err = run(
        capsys,
        "data",
        "synth",
        "--users",
        "5",
        "--items",
        "4",
        "--interactions",
        "99",
        "--out",
        "x",
    )
    assert code == 2 and err.count("\n") == 1 and "do not fit" in err
    before = (out / "interactions.csv").read_bytes()
    again = ("data", "synth", "--users", "60", "--items", "40", "--interactions", "800")
    code, _, err = run(capsys, *again, "--out", str(out))
    assert code == 2 and "--overwrite" in err
    assert (out / "interactions.csv").read_bytes() == before  # nothing lost
    code, _, _ = run(capsys, *again, "--out", str(out), "--overwrite")
    assert code == 0 and len(load_dataset(out)) == 800


# ----- chunked loading --------------------------------------------------------------------
def test_parquet_and_csv_load_to_the_same_dataset(tmp_path):
    write_synthetic(SHAPE, tmp_path / "csv", "csv")
    write_synthetic(SHAPE, tmp_path / "pq", "parquet")
    from_csv = load_dataset(tmp_path / "csv")
    from_parquet = load_dataset(tmp_path / "pq")
    assert isinstance(from_parquet.interactions["user_id"].dtype, pd.CategoricalDtype)
    assert (from_csv.user_ids == from_parquet.user_ids).all()
    assert (from_csv.matrix != from_parquet.matrix).nnz == 0
    assert from_csv.info() | {"name": "x"} == from_parquet.info() | {"name": "x"}
    user = str(from_csv.user_ids[7])
    np.testing.assert_array_equal(from_csv.history(user), from_parquet.history(user))


def test_chunked_reading_over_many_small_batches_matches_pandas(tmp_path):
    write_synthetic(SHAPE, tmp_path, "csv")
    path = tmp_path / "interactions.csv"
    frame, has_times = read_interactions_chunked(path, chunk_rows=997)
    reference = pd.read_csv(path, dtype={"user_id": str, "item_id": str})
    assert has_times and len(frame) == len(reference)
    assert (frame["user_id"].astype(str).to_numpy() == reference["user_id"].to_numpy()).all()
    assert (frame["item_id"].astype(str).to_numpy() == reference["item_id"].to_numpy()).all()
    np.testing.assert_array_equal(frame["timestamp"].to_numpy(), reference["timestamp"])
    # memory follows the rows: two int32 codes, a float32 and an int64 each (+ categories)
    per_row = frame.memory_usage(deep=True).sum() / len(frame)
    assert per_row < 40


def test_chunked_reading_cleans_ids_and_reads_dates(tmp_path):
    path = tmp_path / "interactions.parquet"
    pd.DataFrame(
        {
            "user_id": [" u1", "u2 ", "u1"],
            "item_id": ["a", "b", "b"],
            "rating": ["4.5", "oops", None],
            "timestamp": ["2020-01-01", "2021-06-01", "2020-02-01"],
        }
    ).to_parquet(path)
    frame, has_times = read_interactions_chunked(path, chunk_rows=2)
    assert has_times
    assert frame["user_id"].astype(str).tolist() == ["u1", "u2", "u1"]
    assert frame["rating"].iloc[0] == 4.5 and frame["rating"].iloc[1:].isna().all()
    assert frame["timestamp"].iloc[0] == 1577836800


def test_chunked_reading_errors_are_one_line(tmp_path):
    bad = tmp_path / "interactions.parquet"
    pd.DataFrame({"user": ["1"], "item_id": ["2"]}).to_parquet(bad)
    with pytest.raises(DataError, match="missing column 'user_id'"):
        read_interactions_chunked(bad)
    empty_id = tmp_path / "empty.parquet"
    pd.DataFrame({"user_id": ["1", " "], "item_id": ["2", "3"]}).to_parquet(empty_id)
    with pytest.raises(DataError, match="empty user_id"):
        read_interactions_chunked(empty_id)
    with pytest.raises(DataError, match="not found"):
        read_interactions_chunked(tmp_path / "nope.parquet")


# ----- approximate retrieval ---------------------------------------------------------------
def clustered_space(n: int, dim: int, seed: int) -> tuple[EmbeddingSpace, np.ndarray]:
    """Factor-like item vectors (clusters, varied norms) and taste-mixture queries."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n // 50, dim)).astype(np.float32)
    vectors = centres[rng.integers(0, len(centres), n)] * 0.6
    vectors += rng.standard_normal((n, dim)).astype(np.float32) * 0.5
    vectors *= rng.lognormal(0, 0.3, n).astype(np.float32)[:, None]
    picks = centres[rng.integers(0, len(centres), (400, 2))].mean(axis=1)
    queries = picks + rng.standard_normal((400, dim)).astype(np.float32) * 0.3
    positions = np.arange(n) * 2 + 1  # rows map to non-trivial catalogue positions
    return EmbeddingSpace(vectors, positions), queries.astype(np.float32)


def test_ann_index_reaches_its_calibrated_recall_on_new_queries(tmp_path):
    space, queries = clustered_space(20_000, 32, seed=3)
    index = ANNIndex.build(space, queries[:200], k=10, target_recall=0.95)
    assert index.recall >= 0.95 and index.meta["nprobe"] < index.meta["nlist"]
    positions, scores = index.search(queries[200:], 10)
    exact_rows = exact_top_k(space.vectors, queries[200:], 10)
    assert recall_at_k(positions, space.positions[exact_rows]) >= 0.9
    # the returned scores are the exact inner products, best first
    rows = (positions - 1) // 2
    expected = np.einsum("qkd,qd->qk", space.vectors[rows], queries[200:])
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    index.save(tmp_path / "ann", "fp")
    assert ANNIndex.load(tmp_path / "ann", space, "other") is None
    loaded = ANNIndex.load(tmp_path / "ann", space, "fp")
    np.testing.assert_array_equal(loaded.search(queries[200:210], 10)[0], positions[:10])


@pytest.fixture(scope="module")
def ials_bundle(ml_core, tmp_path_factory):
    model = IALS(factors=16, iterations=5, threads=1).fit(ml_core)
    path = tmp_path_factory.mktemp("ials") / "bundle"
    Bundle(model, ml_core).save(path)
    return path


@pytest.mark.parametrize("cls", [IALS, BPR, RelMF])
def test_factor_scores_are_dot_products_in_the_embedding_space(ml_core, cls):
    model = cls(factors=8, iterations=3, **({"threads": 1} if cls is not RelMF else {})).fit(
        ml_core
    )
    histories = ml_core.histories()[:5]
    space = model.embedding_space()
    expected = model.query_vectors(histories) @ space.vectors.T
    full = model.score(histories)
    np.testing.assert_allclose(full[:, space.positions], expected, rtol=1e-4, atol=1e-4)
    subset = np.array([space.positions[3], 0, space.positions[-1]])
    np.testing.assert_allclose(model.score(histories, subset), full[:, subset], rtol=1e-6)


def test_engine_uses_ann_above_the_threshold_and_agrees_with_exact(ials_bundle, ml_core):
    exact = Engine(Bundle.load(ials_bundle), ann_threshold=10**9)
    approx = Engine(Bundle.load(ials_bundle), ann_threshold=1)
    assert exact.retriever is None and approx.retriever is not None
    assert approx.retriever.recall >= 0.95
    assert (ials_bundle / "ann" / "ann.json").exists()  # cached for the next process
    assert Engine(Bundle.load(ials_bundle), ann_threshold=1).retriever.meta == approx.retriever.meta
    overlaps = []
    for user in ml_core.user_ids[:20]:
        history = exact.user_history(user)
        ours = approx.recommend(history, k=10, explain=False)
        reference = exact.recommend(history, k=10, explain=False)
        overlaps.append(len({r.position for r in ours} & {r.position for r in reference}) / 10)
        for rec in ours:  # scores of what ANN returns are the model's exact scores
            assert rec.score == pytest.approx(
                float(exact.model.score([history], [rec.position])[0, 0]), abs=1e-4
            )
        assert not set(history.tolist()) & {r.position for r in ours}
    assert np.mean(overlaps) >= 0.95


def test_ann_respects_filters_and_still_explains(ials_bundle, ml_core):
    approx = Engine(Bundle.load(ials_bundle), ann_threshold=1)
    exact = Engine(Bundle.load(ials_bundle), ann_threshold=10**9)
    rare = ItemFilter(include={"genres": {"Documentary"}})
    history = exact.user_history(ml_core.user_ids[3])
    ours = approx.recommend(history, k=5, item_filter=rare)
    reference = exact.recommend(history, k=5, item_filter=rare, explain=False)
    assert [r.position for r in ours] == [r.position for r in reference]
    assert all(r.explanation is not None for r in ours)
    documentary = approx.catalog.mask_with_value("genres", ["Documentary"])
    assert all(documentary[r.position] for r in ours)


# ----- incremental updates -----------------------------------------------------------------
@pytest.fixture(scope="module")
def held_out(ml_core):
    """ml_core without one user's interactions (the user stays in the user list)."""
    user = ml_core.user_ids[11]
    keep = ml_core.interactions["user_id"] != user
    return user, ml_core.with_interactions(ml_core.interactions[keep])


def test_ials_fold_in_matches_the_als_user_step_and_a_retrain(ml_core, held_out, tmp_path):
    from implicit.cpu.als import AlternatingLeastSquares

    user, without = held_out
    settings = {"factors": 16, "reg": 5.0, "alpha": 10.0, "iterations": 8, "threads": 1}
    model = IALS(**settings).fit(without)
    Bundle(model, without).save(tmp_path / "b")
    engine = Engine(Bundle.load(tmp_path / "b"))
    items = [ml_core.catalog.item_ids[p] for p in ml_core.history(user)]
    folded = engine.fold_in(user, items[:-5])
    folded = engine.fold_in(user, items[-5:])  # feedback arrives in two batches
    assert folded.method == "least-squares fold-in" and len(folded.history) == len(items)

    # 1) exactly the least-squares user step with the item factors fixed, as implicit solves it
    solver = AlternatingLeastSquares(factors=16, regularization=5.0, alpha=10.0)
    solver.item_factors = np.asarray(model.item_factors_)
    row = ml_core.matrix[ml_core.user_row(user)].astype(np.float32)
    reference = solver.recalculate_user(0, row)
    np.testing.assert_allclose(folded.vector, np.ravel(reference), rtol=1e-3, atol=1e-4)

    # 2) close to a full retrain that saw the user (same seed, item factors re-learnt)
    retrained = IALS(**settings).fit(ml_core)
    retrained_vector = retrained.query_vectors([folded.history])[0]
    folded_scores = engine.model.score([folded.history])[0]
    retrained_scores = retrained.score([folded.history])[0]
    finite = np.isfinite(folded_scores) & np.isfinite(retrained_scores)
    assert np.corrcoef(folded_scores[finite], retrained_scores[finite])[0, 1] > 0.95
    cosine = folded.vector @ retrained_vector
    assert cosine / np.linalg.norm(folded.vector) / np.linalg.norm(retrained_vector) > 0.9
    top_folded = {r.position for r in engine.recommend(engine.user_history(user), explain=False)}
    seen = folded.history
    ranked = np.argsort(
        -np.where(np.isin(np.arange(len(retrained_scores)), seen), -np.inf, retrained_scores)
    )[:10]
    assert len(top_folded & set(ranked.tolist())) >= 7


def test_itemknn_feedback_is_a_history_append_close_to_a_retrain(ml_core, held_out, tmp_path):
    user, without = held_out
    model = ItemKNN(neighbors=50).fit(without)
    Bundle(model, without).save(tmp_path / "knn")
    engine = Engine(Bundle.load(tmp_path / "knn"))
    history = ml_core.history(user)
    folded = engine.fold_in(user, [ml_core.catalog.item_ids[p] for p in history])
    assert folded.vector is None and folded.method == "history append"
    ours = engine.recommend(engine.user_history(user), k=10, explain=False)
    expected = model.score([np.unique(history)])[0]
    assert [r.score for r in ours] == pytest.approx(
        sorted(expected[~np.isin(np.arange(len(expected)), history)], reverse=True)[:10], abs=1e-5
    )
    retrained = ItemKNN(neighbors=50).fit(ml_core)
    scores = retrained.score([history])[0]
    scores[history] = -np.inf
    overlap = {r.position for r in ours} & set(np.argsort(-scores)[:10].tolist())
    assert len(overlap) >= 8


def test_fold_in_extends_known_users_and_rejects_unknown_items(ials_bundle, ml_core):
    engine = Engine(Bundle.load(ials_bundle))
    user = str(ml_core.user_ids[0])
    before = engine.user_history(user)
    unseen = next(i for i in range(ml_core.n_items) if i not in set(before.tolist()))
    with pytest.raises(NotFoundError):
        engine.fold_in(user, [engine.catalog.item_ids[unseen], "no-such-item"])
    np.testing.assert_array_equal(engine.user_history(user), before)  # nothing half-applied
    result = engine.fold_in(user, [engine.catalog.item_ids[unseen]], timestamp=1_700_000_000)
    assert result.history[-1] == unseen and len(result.history) == len(before) + 1
    assert unseen not in {r.position for r in engine.recommend(engine.user_history(user))}
    with pytest.raises(WhyrecError):
        engine.fold_in(user, [])
    frame = engine.feedback.frame(engine.catalog.item_ids)
    assert frame.to_dict("records") == [
        {
            "user_id": user,
            "item_id": engine.catalog.item_ids[unseen],
            "rating": pytest.approx(np.nan, nan_ok=True),
            "timestamp": 1_700_000_000,
        }
    ]
    # the feedback frame is canonical interactions: it can be appended for the next retrain
    extended = Dataset(pd.concat([ml_core.interactions, frame], ignore_index=True), ml_core.catalog)
    assert len(extended) == len(ml_core) + 1
    with pytest.raises(NotFoundError):
        engine.user_history("never-seen")
    assert engine.fold_in("brand-new", [engine.catalog.item_ids[0]]).history.tolist() == [0]


def test_text_and_sasrec_scores_are_dot_products_in_their_embedding_spaces():
    """The property ANN relies on is structural, so untrained (seeded) networks show it."""
    import torch

    from whyrec.models.sasrec import SASRec, SequenceNetwork
    from whyrec.models.text import TextRecommender, build_mapper

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    histories = [rng.choice(60, size, replace=False) for size in (1, 4, 9)]

    text = TextRecommender(mapping="linear", dim=8)
    text.n_items_ = 60
    text.text_vectors_ = rng.standard_normal((60, 24)).astype(np.float32)
    text.mapper_ = build_mapper(24, text.config).eval()
    text._refresh_item_space()

    sasrec = SASRec(dim=16, max_len=10)
    sasrec.n_items_ = 60
    sasrec.trained_items_ = np.arange(0, 60, 2)
    sasrec.network_ = SequenceNetwork(sasrec.config, 60, None).eval()
    sasrec._cache_item_vectors()

    for model in (text, sasrec):
        space = model.embedding_space()
        expected = model.query_vectors(histories) @ space.vectors.T
        scores = model.score(histories)
        np.testing.assert_allclose(scores[:, space.positions], expected, rtol=1e-4, atol=1e-5)
        outside = np.setdiff1d(np.arange(60), space.positions)
        assert np.isneginf(scores[:, outside]).all()  # never retrievable, never ranked


def test_a_parquet_dataset_trains_saves_and_recommends_through_the_cli(tmp_path, capsys):
    write_synthetic(SHAPE, tmp_path / "data", "parquet")
    bundle = tmp_path / "bundle"
    code, stdout, _ = run(
        capsys,
        *("train", "--data", str(tmp_path / "data"), "--model", "itemknn", "--no-calibrate"),
        *("--out", str(bundle)),
    )
    assert code == 0 and "trained" in stdout
    loaded = Bundle.load(bundle)
    original = load_dataset(tmp_path / "data")
    assert (loaded.train.matrix != original.matrix).nnz == 0
    np.testing.assert_array_equal(loaded.train.history("17"), original.history("17"))
    code, stdout, _ = run(capsys, "recommend", "--bundle", str(bundle), "--user", "17", "--json")
    assert code == 0
    items = json.loads(stdout)["items"]
    assert len(items) == 10 and not {i["item_id"] for i in items} & {
        original.catalog.item_ids[p] for p in original.history("17")
    }
