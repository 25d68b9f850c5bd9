"""Train iALS on Apache Spark (MLlib ALS with implicit preferences), save a normal bundle.

When the interaction log outgrows one machine, the heavy step (alternating least squares
over every user and item) goes to Spark; everything after it stays whyrec's. Spark's
item factors become an ordinary `IALS` model whose config states Spark's objective, so
`recommend`, `explain`, `chat`, `serve` and fold-in load it unchanged.

Spark MLlib's implicit ALS differs from implicit's in two ways, both carried over so that
folding a history in solves exactly Spark's user step:

- confidence of an observed interaction is 1 + α_spark (implicit: α) → whyrec α = 1 + α_spark;
- λ is multiplied by the user's number of interactions (weighted-λ ALS) →
  `reg_scaling="count"`, with `reg` = Spark's regParam.

Data reaches Spark as a Parquet file of integer codes written next to the job, read by the
executors: the same path a cluster would take (there, write it to shared storage).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from whyrec.data.dataset import Dataset
from whyrec.errors import WhyrecError
from whyrec.models.ials import IALS

SPARK_DEFAULT_REG = 0.05
"""regParam when none is given: Spark's λ multiplies each user's count, so it is small."""
DEFAULT_DRIVER_MEMORY = "4g"
ENGINES = ("local", "spark")
"""Training engines `whyrec train --engine` accepts."""


def _require_spark() -> None:
    if shutil.which("java") is None:
        raise WhyrecError(
            "--engine spark needs a Java runtime (17+), "
            "e.g. apt-get install openjdk-17-jre-headless"
        )
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise WhyrecError("--engine spark needs pyspark: pip install pyspark") from None


@contextlib.contextmanager
def spark_session(master: str = "local[*]", driver_memory: str = DEFAULT_DRIVER_MEMORY):
    """A Spark session for whyrec jobs (quiet logs, no web UI), stopped on exit; an already
    active session is reused and left running."""
    _require_spark()
    import warnings

    from pyspark.sql import SparkSession

    # pyspark warns on every pandas 3 conversion; the two columns we convert are plain.
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")

    active = SparkSession.getActiveSession()
    if active is not None:  # a notebook's or a test's session: use it, leave it running
        yield active
        return
    scratch = Path(tempfile.mkdtemp(prefix="whyrec-spark-"))
    session = (
        SparkSession.builder.master(master)
        .appName("whyrec-als")
        .config("spark.driver.memory", driver_memory)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.local.dir", str(scratch))
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    session.sparkContext.setCheckpointDir(str(scratch / "checkpoints"))
    try:
        yield session
    finally:
        session.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def _write_codes(dataset: Dataset, path: Path) -> None:
    """The binary training matrix as (user, item, 1.0) rows in Parquet, one row group a
    million interactions, without materialising it as Python objects."""
    matrix = dataset.matrix
    rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int32), np.diff(matrix.indptr))
    schema = pa.schema([("user", pa.int32()), ("item", pa.int32()), ("rating", pa.float32())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, matrix.nnz, 1 << 20):
            stop = min(start + (1 << 20), matrix.nnz)
            writer.write_table(
                pa.table(
                    {
                        "user": rows[start:stop],
                        "item": matrix.indices[start:stop].astype(np.int32),
                        "rating": np.ones(stop - start, dtype=np.float32),
                    },
                    schema=schema,
                )
            )


def _factor_table(frame, size: int, rank: int) -> np.ndarray:
    """Spark's (id, features) rows as a dense array; ids Spark never saw stay zero."""
    table = np.zeros((size, rank), dtype=np.float32)
    for row in frame.toLocalIterator():
        table[row["id"]] = row["features"]
    return table


def check_engine(engine: str, model) -> None:
    """Fail before any data is read when the engine cannot train the model."""
    if engine not in ENGINES:
        raise WhyrecError(f"unknown --engine {engine!r}: use {' or '.join(ENGINES)}")
    if engine == "spark":
        if not isinstance(model, IALS):
            raise WhyrecError(f"--engine spark trains ials only, not {model.name}")
        spark_config(model)
        _require_spark()


def spark_config(model: IALS) -> dict:
    """The whyrec IALS config that states what Spark will optimise (see module doc)."""
    cfg = model.config
    explicit = cfg.model_fields_set
    if "reg_scaling" in explicit and cfg.reg_scaling != "count":
        raise WhyrecError("Spark ALS always scales λ by the user's count: drop reg_scaling")
    if cfg.alpha <= 1.0:
        raise WhyrecError("--engine spark needs alpha > 1 (Spark's confidence is 1 + α_spark)")
    reg = cfg.reg if "reg" in explicit else SPARK_DEFAULT_REG
    return {**cfg.model_dump(), "reg": reg, "reg_scaling": "count"}


def fit_ials_on_spark(
    model: IALS,
    dataset: Dataset,
    master: str = "local[*]",
    *,
    session=None,
    driver_memory: str = DEFAULT_DRIVER_MEMORY,
    keep_user_factors: bool = False,
) -> IALS:
    """Fit `model`'s settings with Spark MLlib ALS; returns a fitted whyrec `IALS`.

    `session`: an existing SparkSession (tests and notebooks reuse one); otherwise one is
    started for `master` and stopped afterwards. With `keep_user_factors` Spark's own user
    factors are kept as `user_factors_spark_` (for checking fold-in against them).
    """
    if not isinstance(model, IALS):
        raise WhyrecError(f"--engine spark trains ials only, not {model.name}")
    fitted = IALS(**spark_config(model))
    with contextlib.ExitStack() as stack:
        if session is None:
            session = stack.enter_context(spark_session(master, driver_memory))
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="whyrec-als-")))
        _write_codes(dataset, folder / "interactions.parquet")
        frame = session.read.parquet(str(folder / "interactions.parquet"))
        als = _als(fitted, session)
        trained = als.fit(frame)
        cfg = fitted.config
        fitted.item_factors_ = _factor_table(trained.itemFactors, dataset.n_items, cfg.factors)
        if keep_user_factors:
            fitted.user_factors_spark_ = _factor_table(
                trained.userFactors, dataset.n_users, cfg.factors
            )
    fitted.n_items_ = dataset.n_items
    fitted.active_ = np.flatnonzero(dataset.matrix.getnnz(axis=0) > 0).astype(np.int64)
    return fitted


def _als(model: IALS, session):
    from pyspark.ml.recommendation import ALS

    cfg = model.config
    parallelism = max(1, session.sparkContext.defaultParallelism)
    return ALS(
        rank=cfg.factors,
        maxIter=cfg.iterations,
        regParam=cfg.reg,
        alpha=cfg.alpha - 1.0,
        implicitPrefs=True,
        userCol="user",
        itemCol="item",
        ratingCol="rating",
        seed=cfg.seed,
        nonnegative=False,
        numUserBlocks=2 * parallelism,
        numItemBlocks=2 * parallelism,
        checkpointInterval=5,
    )
