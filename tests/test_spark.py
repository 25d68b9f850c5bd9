"""Training iALS on a real local Spark session (one per module: Spark starts slowly)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from system_deps import require
from whyrec.bundle import Bundle
from whyrec.cli import main
from whyrec.engine import Engine
from whyrec.errors import WhyrecError
from whyrec.models import EASE, IALS
from whyrec.spark import check_engine, fit_ials_on_spark, spark_config, spark_session


def needs_java() -> None:
    """Only the tests that start Spark need Java; the checks below run without it."""
    require(
        shutil.which("java") is not None,
        "a Java runtime",
        "apt-get install openjdk-17-jre-headless",
    )


def run(argv: list[str]) -> None:
    """The CLI in-process; typer ends a successful command with SystemExit(0)."""
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code in (0, None)


@pytest.fixture(scope="module")
def session():
    needs_java()
    with spark_session("local[2]", driver_memory="1g") as active:
        yield active


@pytest.fixture(scope="module")
def spark_model(session, ml_core):
    model = IALS(factors=8, iterations=2, alpha=11.0, reg=0.05)
    return fit_ials_on_spark(model, ml_core, session=session, keep_user_factors=True)


def test_fold_in_reproduces_sparks_own_user_factors(spark_model, ml_core):
    """Spark's last ALS step solves the users with the final item factors fixed; our
    fold-in with the weighted-λ config must land on the same vectors."""
    assert spark_model.config.reg_scaling == "count" and spark_model.config.alpha == 11.0
    folded = spark_model.user_factors(ml_core.matrix)
    np.testing.assert_allclose(folded, spark_model.user_factors_spark_, rtol=1e-3, atol=1e-4)
    assert np.abs(spark_model.item_factors_[spark_model.active_]).sum(axis=1).min() > 0


def test_cli_trains_on_spark_and_the_bundle_works_downstream(session, tmp_path, capsys):
    out = tmp_path / "spark-ials"
    run(
        [
            *("train", "--data", "ml-latest-small", "--kcore", "20", "--model", "ials"),
            *("--param", "factors=8", "--param", "iterations=2"),
            *("--engine", "spark", "--master", "local[2]", "--no-calibrate", "--out", str(out)),
        ]
    )
    assert "trained" in capsys.readouterr().out
    bundle = Bundle.load(out)
    assert isinstance(bundle.model, IALS) and bundle.info["engine"] == "spark (local[2])"
    assert json.loads((out / "model" / "model.json").read_text())["model"] == "ials"
    engine = Engine(bundle)
    recs = engine.recommend(engine.user_history("1"), k=5)
    assert len(recs) == 5 and all(np.isfinite(r.score) for r in recs)
    assert recs[0].explanation is not None
    run(["recommend", "--bundle", str(out), "--user", "1", "-k", "3", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert [i["rank"] for i in payload["items"]] == [1, 2, 3]


def test_engine_choice_is_checked_before_any_data_is_read():
    with pytest.raises(WhyrecError, match="ials only"):
        check_engine("spark", EASE())
    with pytest.raises(WhyrecError, match="unknown --engine"):
        check_engine("dask", IALS())
    with pytest.raises(WhyrecError, match="reg_scaling"):
        spark_config(IALS(reg_scaling="constant"))
    with pytest.raises(WhyrecError, match="alpha > 1"):
        spark_config(IALS(alpha=0.5))
    assert spark_config(IALS())["reg"] == pytest.approx(0.05)  # Spark's weighted-λ default


def test_local_fit_refuses_sparks_objective(ml_core):
    with pytest.raises(WhyrecError, match="--engine spark"):
        IALS(reg_scaling="count").fit(ml_core)
