"""SANSA (sparse EASE) and EASE's memory check: exactness, persistence, the whole bundle path,
accuracy against EASE on several catalog shapes, and refusals that come before the work."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from cli_helpers import run
from whyrec.bundle import Bundle
from whyrec.data.dataset import Dataset
from whyrec.data.loaders import load_dataset
from whyrec.data.splits import split
from whyrec.data.synth import SynthConfig, write_synthetic
from whyrec.engine import Engine
from whyrec.errors import ResourceError, WhyrecError
from whyrec.evaluation.protocol import EvaluationTarget, evaluate_model
from whyrec.models import EASE, MODELS, SANSA, memory, model_class
from whyrec.models import ease as ease_module
from whyrec.models import sansa as sansa_module
from whyrec.models.base import Recommender


def synthetic(folder: Path, users: int, items: int, interactions: int) -> Dataset:
    """A `whyrec data synth` catalog, written and loaded as a user's would be."""
    config = SynthConfig(users=users, items=items, interactions=interactions, seed=0)
    write_synthetic(config, folder, "parquet")
    return load_dataset(folder)


@pytest.fixture(scope="module")
def loo(ml_core):
    return split(ml_core, "loo", seed=0)


@pytest.fixture(scope="module", params=["factors", "refit", "refit-capped"])
def fitted(loo, request):
    weights, _, capped = request.param.partition("-")
    cap = 1.0 if capped else None  # None: each kind's default (none for factors)
    return SANSA(weights_per_item=40, weights=weights, outgoing_cap=cap).fit(loo.train)


def test_registered_under_its_name():
    assert MODELS["sansa"] is SANSA
    assert model_class("SANSA") is SANSA
    with pytest.raises(WhyrecError, match="weights_per_item"):
        SANSA(weights_per_item=0)
    with pytest.raises(WhyrecError, match="factorizer"):
        SANSA(factorizer="dense")
    with pytest.raises(WhyrecError, match="outgoing_cap applies to weights=refit only"):
        SANSA(weights="factors", outgoing_cap=2.0)


def test_weights_are_sparse_at_the_target_density(fitted):
    encoder, decoder = fitted.weights_
    n = len(fitted.active_)
    assert encoder.shape == decoder.shape == (n, n)
    for factor in (encoder, decoder):
        assert factor.dtype == np.float32 and factor.indices.dtype == np.int32
    assert fitted.density == pytest.approx((encoder.nnz + decoder.nnz) / n**2)
    if fitted.config.weights == "factors":  # about weights_per_item per item, never items²
        for factor in (encoder, decoder):
            assert 0.5 * 40 * n <= factor.nnz <= 1.2 * 40 * n
        return
    # refit: W with at most weights_per_item weights per target item, zero diagonal, F = I
    per_target = np.diff(sp.csc_matrix(encoder).indptr)
    assert per_target.max() <= 40
    assert not encoder.diagonal().any()
    assert (decoder != sp.identity(n, format="csr")).nnz == 0
    per_source = np.diff(encoder.indptr)
    if fitted.config.outgoing_cap:  # 1: at most 40 weights from each item too
        assert per_source.max() <= 40
        return
    assert per_source.max() > 40 and encoder.nnz >= 0.5 * 40 * n  # hubs reach far


def test_refit_at_full_support_is_ease():
    """Local EASE whose support is every other item is EASE's closed form."""
    rng = np.random.default_rng(0)
    matrix = sp.random(2000, 120, density=0.08, format="csr", random_state=rng, dtype=np.float32)
    matrix.data[:] = 1
    config = SANSA(reg=50.0, weights_per_item=119).config
    weights = sansa_module.refit_weights(matrix, config).toarray()
    exact = np.asarray(ease_module.ease_weights(matrix, 50.0))
    np.testing.assert_allclose(weights, exact, atol=2e-5)


@pytest.mark.parametrize("gram_per_item", [0, 12])
def test_refit_solves_each_items_normal_equations_on_its_strongest_neighbours(gram_per_item):
    """Exact systems also when a pruned Gram picked the supports (pairs it dropped are
    recomputed, not read as 0)."""
    rng = np.random.default_rng(1)
    matrix = sp.random(1500, 200, density=0.06, format="csr", random_state=rng, dtype=np.float32)
    matrix.data[:] = 1
    config = SANSA(reg=20.0, weights_per_item=7, gram_per_item=gram_per_item).config
    weights = sansa_module.refit_weights(matrix, config)
    gram = (matrix.T @ matrix).toarray().astype(np.float64)
    by_target = sp.csc_matrix(weights)
    for target in (0, 57, 199):
        support = by_target.indices[by_target.indptr[target] : by_target.indptr[target + 1]]
        others = np.delete(gram[target], target)
        assert len(support) == 7 and target not in support
        assert gram[target, support].min() >= np.sort(others)[-7]  # its strongest pairs
        system = gram[np.ix_(support, support)] + 20.0 * np.eye(7)
        exact = np.linalg.solve(system, gram[support, target])
        column = weights[:, [target]].toarray().ravel()[support]
        np.testing.assert_allclose(column, exact, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("catalog", ["movielens", "synthetic"])
def test_refit_weights_do_not_depend_on_hubs_or_batches(catalog, ml_core, tmp_path, monkeypatch):
    """Every Gram entry a pruned refit reads is an exact count, so the hubs' block computed
    once and batches grown to an item budget give the same W to the last bit as small
    batches that recompute everything (the layout before the hub block)."""
    if catalog == "movielens":
        matrix = ml_core.matrix
    else:
        matrix = synthetic(tmp_path, users=1500, items=3000, interactions=40_000).matrix
    matrix = matrix[:, np.flatnonzero(matrix.getnnz(axis=0))].tocsr()
    config = SANSA(weights_per_item=15, gram_per_item=8).config
    supports = sansa_module._neighbour_table(sansa_module.sparse_gram(matrix, config), 15)
    exact = sansa_module._ExactCooccurrences(sp.csc_matrix(matrix, dtype=np.float32), supports)
    assert (exact.hub_at >= 0).sum() > 100  # hubs in use
    default = sansa_module.refit_weights(matrix, config)
    layouts = {"no hubs, small batches": (0, 64), "every shared item a hub": (10**6, 16)}
    for hubs, batch_items in layouts.values():
        monkeypatch.setattr(sansa_module, "REFIT_HUB_ITEMS", hubs)
        monkeypatch.setattr(sansa_module, "REFIT_BATCH_ITEMS", batch_items)
        other = sansa_module.refit_weights(matrix, config)
        for part in ("indptr", "indices", "data"):
            np.testing.assert_array_equal(getattr(other, part), getattr(default, part))


def test_default_outgoing_cap_scales_with_the_weights_and_binds_only_on_large_catalogs(
    loo, tmp_path
):
    """50 × weights_per_item by default (refit only): on a catalog with fewer active items
    it cannot bind, so the model is the uncapped one; where hubs reach further it cuts."""
    assert sansa_module.outgoing_limit(SANSA().config) == 10_000  # 200 weights an item
    assert sansa_module.outgoing_limit(SANSA(weights_per_item=20).config) == 1_000
    assert sansa_module.outgoing_limit(SANSA(outgoing_cap=0).config) is None
    assert sansa_module.outgoing_limit(SANSA(weights="factors").config) is None
    small = SANSA(weights_per_item=40).fit(loo.train)
    assert len(small.active_) < 50 * 40
    uncapped = SANSA(weights_per_item=40, outgoing_cap=0).fit(loo.train)
    for part in ("indptr", "indices", "data"):
        np.testing.assert_array_equal(
            getattr(small.weights_[0], part), getattr(uncapped.weights_[0], part)
        )
    large = synthetic(tmp_path, users=1500, items=3000, interactions=40_000)
    capped, free = (SANSA(weights_per_item=2, outgoing_cap=cap).fit(large) for cap in (None, 0))
    assert np.diff(capped.weights_[0].indptr).max() == 100 < np.diff(free.weights_[0].indptr).max()


def test_outgoing_cap_keeps_each_rows_largest_weights():
    rng = np.random.default_rng(3)
    weights = sp.random(300, 300, density=0.1, format="csr", random_state=rng, dtype=np.float32)
    weights.data -= 0.5  # negative weights count by their size
    weights.sort_indices()
    capped = sansa_module.cap_outgoing(weights, 12)
    lengths = np.diff(weights.indptr)
    np.testing.assert_array_equal(np.diff(capped.indptr), np.minimum(lengths, 12))
    assert lengths.max() > 12  # the cap was reached
    for row in range(300):
        start, stop = weights.indptr[row], weights.indptr[row + 1]
        strongest = np.argsort(-np.abs(weights.data[start:stop]), kind="stable")[:12]
        kept = capped[row]
        np.testing.assert_array_equal(kept.indices, np.sort(weights.indices[start:stop][strongest]))
        np.testing.assert_array_equal(kept.data, weights[row].toarray().ravel()[kept.indices])


def test_contributions_are_exact_and_the_diagonal_is_zero(loo, fitted):
    history = np.unique(loo.train.histories()[3])
    scores = fitted.score([history])[0]
    items = np.concatenate([np.flatnonzero(np.isfinite(scores))[:40], history[:3]])
    parts = fitted.contributions(history, items)
    assert parts.shape == (len(items), len(history))
    np.testing.assert_allclose(parts.sum(axis=1), scores[items], rtol=1e-4, atol=1e-5)
    # an item's own weight is zero (as in EASE): a history item never explains itself
    for row, item in enumerate(history[:3], start=40):
        assert parts[row, np.flatnonzero(history == item)[0]] == 0.0
    # and the score of one item is the row-sum of B = E @ F without its diagonal
    encoder, decoder = fitted.weights_
    dense = (encoder @ decoder).toarray()
    np.fill_diagonal(dense, 0.0)
    active = fitted._active_of[history]
    np.testing.assert_allclose(
        scores[fitted.active_], dense[active].sum(axis=0), rtol=1e-4, atol=1e-5
    )


def test_save_load_gives_identical_scores(tmp_path, loo, fitted):
    fitted.save(tmp_path / "sansa")
    loaded = Recommender.load(tmp_path / "sansa")
    assert isinstance(loaded, SANSA) and loaded.config == fitted.config
    histories = loo.train.histories()[:20]
    np.testing.assert_array_equal(loaded.score(histories), fitted.score(histories))
    items = np.array([0, 5, 17])
    np.testing.assert_array_equal(
        loaded.contributions(histories[0], items), fitted.contributions(histories[0], items)
    )


@pytest.mark.parametrize("factorizer", ["icf", "cholmod"])
def test_full_density_with_the_ease_objective_is_ease(factorizer):
    """objective=ease undoes the package's norm scaling: at full density B is EASE's."""
    rng = np.random.default_rng(0)
    matrix = sp.random(2000, 300, density=0.05, format="csr", random_state=rng, dtype=np.float32)
    matrix.data[:] = 1
    config = SANSA(reg=50.0, weights_per_item=300, factorizer=factorizer, objective="ease").config
    encoder, decoder, _ = sansa_module.sansa_factors(matrix, config)
    weights = (encoder @ decoder).toarray()
    np.fill_diagonal(weights, 0.0)
    exact = np.asarray(ease_module.ease_weights(matrix, 50.0))
    np.testing.assert_allclose(weights, exact, atol=5e-5)
    if factorizer == "icf":  # the package's own model keeps its scaling: not EASE's weights
        package = SANSA(reg=50.0, weights_per_item=300, objective="package").config
        encoder, decoder, _ = sansa_module.sansa_factors(matrix, package)
        scaled = (encoder @ decoder).toarray()
        np.fill_diagonal(scaled, 0.0)
        assert np.abs(scaled - exact).max() > 1e-2


@pytest.mark.parametrize(
    ("users", "items", "interactions"),
    [(1500, 300, 45_000), (3000, 2000, 60_000)],  # a dense and a sparse catalog shape
)
def test_ranks_close_to_ease_on_several_catalog_shapes(tmp_path, users, items, interactions):
    held = split(synthetic(tmp_path / "synth", users, items, interactions), "loo", seed=0)
    target = EvaluationTarget.from_split(held)
    results = {
        name: evaluate_model(name, model, held, [10], target=target).summary["ndcg@10"].mean
        for name, model in (("ease", EASE(reg=100.0)), ("sansa", SANSA(weights_per_item=50)))
    }
    assert results["sansa"] >= 0.9 * results["ease"] > 0


def test_bundle_recommends_explains_and_folds_in(tmp_path, ml_core):
    user = ml_core.user_ids[11]
    without = ml_core.with_interactions(
        ml_core.interactions[ml_core.interactions["user_id"] != user]
    )
    Bundle(SANSA(weights_per_item=40).fit(without), without).save(tmp_path / "b")
    engine = Engine(Bundle.load(tmp_path / "b"))
    history = ml_core.history(user)
    folded = engine.fold_in(user, [ml_core.catalog.item_ids[p] for p in history[:30]])
    assert folded.method == "history append"
    recommendations = engine.recommend(engine.user_history(user), k=5)
    assert len(recommendations) == 5
    assert not {r.position for r in recommendations} & set(history[:30].tolist())
    for rec in recommendations:
        assert rec.explanation is not None and rec.because
        assert rec.explanation.history_method == "exact"
        assert rec.because[0].position in set(history[:30].tolist())


def test_tune_covers_sansa_parameters(tmp_path, capsys):
    code, _, err = run(
        capsys,
        *("tune", "--model", "sansa", "--split", "loo", "--kcore", "20"),
        *("--grid", "weights_per_item=20,60", "--param", "reg=10"),
        *("--json", str(tmp_path / "tune.json")),
    )
    assert code == 0, err
    import json

    rows = json.loads((tmp_path / "tune.json").read_text())
    assert len(rows["grid"]) == 2


def test_the_packages_collections_skip_the_objects_the_process_already_held(loo):
    """The package collects garbage ~25 times a fit; in a large process (a test session, a
    server) walking every old object each time made the fit minutes long."""
    sansa_module._import_sansa()  # its import's own collections are not the fit's
    held = len(gc.get_objects())
    frozen: list[int] = []

    def note(phase: str, _info: dict) -> None:
        if phase == "start":
            frozen.append(gc.get_freeze_count())

    gc.callbacks.append(note)
    try:
        SANSA(weights_per_item=10, inverse_steps=2, weights="factors").fit(loo.train)
    finally:
        gc.callbacks.remove(note)
    assert frozen and min(frozen) >= 0.9 * held  # every collection in the fit skipped them
    assert gc.get_freeze_count() == 0  # and they are collectable again afterwards


# ----- memory: measured before the work, refused in one line ---------------------------------
def test_ease_gram_bands_equal_the_whole_product(monkeypatch):
    rng = np.random.default_rng(0)
    matrix = sp.random(300, 70, density=0.1, format="csr", random_state=rng, dtype=np.float64)
    matrix.data[:] = 1
    monkeypatch.setattr(ease_module, "GRAM_BAND_ENTRIES", 70 * 9)  # bands of 9 rows
    gram = ease_module.dense_gram(matrix.astype(np.int64), reg=3.0)
    expected = (matrix.T @ matrix).toarray() + 3.0 * np.eye(70)
    assert gram.dtype == np.float32 and gram.flags.c_contiguous
    np.testing.assert_array_equal(gram, expected.astype(np.float32))


def test_ease_refuses_before_fitting_when_memory_is_short(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(memory, "available_bytes", lambda: 50 * 2**20)  # 50 MB free
    monkeypatch.setattr(ease_module.ItemItemModel, "fit", _must_not_run)
    out = tmp_path / "bundle"
    code, _, err = run(capsys, "train", "--model", "ease", "--out", str(out))
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err
    n_items = 9724  # items with at least one rating in ml-latest-small
    need = memory.gigabytes(ease_module.peak_bytes(n_items))
    assert f"EASE needs about {need} for {n_items:,} items" in lines[0]
    assert "50 MB" not in lines[0] and "0.05 GB free" in lines[0]
    assert "--model sansa" in lines[0] and "--kcore" in lines[0]
    assert not out.exists()


def _must_not_run(*_args, **_kwargs):
    raise AssertionError("the fit started although the memory check should have refused")


def test_ease_memory_estimate_matches_its_measured_peak():
    """The estimate is what the fit really holds: the peak of a child process's fit."""
    import subprocess
    import sys

    code = (
        "import numpy as np, scipy.sparse as sp\n"
        "from whyrec.models.ease import ease_weights\n"
        "def rss(k):\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith(k): return int(line.split()[1]) * 1024\n"
        "m = sp.random(6000, 4000, density=0.05, format='csr', random_state=0)\n"
        "m.data[:] = 1\n"
        "open('/proc/self/clear_refs', 'w').write('5')\n"
        "start = rss('VmRSS:')\n"
        "w = ease_weights(m, 50.0)\n"
        "print(rss('VmHWM:') - start)\n"
    )
    grown = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               check=True).stdout)  # fmt: skip
    estimate = ease_module.peak_bytes(4000)
    assert 0.8 * estimate <= grown <= 1.1 * estimate


def test_sansa_stops_building_the_gram_when_memory_runs_short(monkeypatch, ml_core):
    monkeypatch.setattr(memory, "available_bytes", lambda: 2 * 2**20)
    monkeypatch.setattr(sansa_module, "GRAM_BAND_ENTRIES", 200_000)  # several bands
    with pytest.raises(ResourceError, match=r"SANSA needs more than .* gram_per_item=N.*--kcore"):
        SANSA().fit(ml_core)


def test_sansa_gram_is_exact_when_it_fits(ml_core):
    matrix = ml_core.matrix
    gram = sansa_module.sparse_gram(matrix, SANSA().config)
    expected = (matrix.T @ matrix).tocsr()
    assert gram.dtype == np.float32
    assert abs(gram - expected).max() == 0
    assert sansa_module.gram_upper_bound(matrix) >= gram.nnz


def test_available_memory_reads_meminfo(monkeypatch, tmp_path):
    fake = tmp_path / "meminfo"
    fake.write_text("MemTotal:  1000 kB\nMemAvailable:   2048 kB\n")
    monkeypatch.setattr(memory, "MEMINFO", fake)
    monkeypatch.setattr(memory, "CGROUP", tmp_path / "no-cgroup")
    assert memory.available_bytes() == 2048 * 1024
    limits = tmp_path / "cgroup"
    limits.mkdir()
    (limits / "memory.max").write_text("3000000\n")
    (limits / "memory.current").write_text("2000000\n")
    monkeypatch.setattr(memory, "CGROUP", limits)
    assert memory.available_bytes() == 1_000_000  # the container's limit binds first


def test_pruned_gram_keeps_each_items_strongest_pairs_and_stays_symmetric(ml_core):
    matrix = ml_core.matrix
    full = (matrix.T @ matrix).tocsr()  # sparse throughout: 9,700 items² dense is 380 MB
    pruned = sansa_module.sparse_gram(matrix, SANSA(gram_per_item=5).config)
    assert abs(pruned - pruned.T).max() == 0
    np.testing.assert_array_equal(pruned.diagonal(), full.diagonal())
    rows, cols = pruned.nonzero()
    kept = np.asarray(full[rows, cols]).ravel()
    np.testing.assert_array_equal(np.asarray(pruned[rows, cols]).ravel(), kept)  # exact counts
    assert (kept != 0).all()
    for item in range(0, full.shape[0], 97):  # each row keeps at least its 5 strongest
        off = full[item].toarray().ravel()
        off[item] = 0
        fifth = np.sort(off)[-5]
        assert (pruned[item].toarray().ravel()[off > fifth] != 0).all()
    assert pruned.nnz <= (1 + 2 * 5) * full.shape[0]
