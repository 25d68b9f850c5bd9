"""Loaders: MovieLens layouts, the canonical format, and clear errors on bad files."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from whyrec.data.loaders import load_dataset, load_directory
from whyrec.errors import DataError


def test_movielens_small_counts_and_catalog(ml_small):
    assert len(ml_small) == 100_836
    assert ml_small.n_users == 610
    assert len(ml_small.catalog) == 9_742
    toy = ml_small.catalog.position("1")
    assert ml_small.catalog.titles[toy] == "Toy Story (1995)"
    assert ml_small.catalog.year(toy) == 1995
    assert set(ml_small.catalog.values("genres", toy)) == {
        "Adventure",
        "Animation",
        "Children",
        "Comedy",
        "Fantasy",
    }
    assert ml_small.catalog.values("decade", toy) == ("1990s",)
    assert "pixar" in ml_small.catalog.values("tags", toy)
    assert "Toy Story (1995)" in ml_small.catalog.text(toy)


def test_movielens_tags_are_normalized_and_frequent(ml_small):
    counts = ml_small.catalog.value_counts("tags")
    assert all(tag == tag.lower().strip() for tag in counts)
    assert min(counts.values()) >= 2
    no_genre = ml_small.catalog.value_counts("genres")
    assert "(no genres listed)" not in no_genre


def test_min_rating_and_kcore(ml_small):
    positives = ml_small.filter_min_rating(4.0)
    assert len(positives) == int((ml_small.interactions["rating"] >= 4.0).sum())
    core = ml_small.kcore(10)
    frame = core.interactions
    assert frame["user_id"].value_counts().min() >= 10
    assert frame["item_id"].value_counts().min() >= 10


def _write_canonical(tmp_path, interactions: str, items: str | None):
    (tmp_path / "interactions.csv").write_text(interactions)
    if items is not None:
        (tmp_path / "items.csv").write_text(items)
    return tmp_path


def test_canonical_csv_with_attributes(tmp_path):
    _write_canonical(
        tmp_path,
        "user_id,item_id,rating,timestamp\nu1,a,5,10\nu1,b,3,20\nu2,a,4,15\n",
        "item_id,title,year,genre,cook_time\na,Apple Pie,1999,dessert|baking,60\n"
        "b,Bean Soup,,soup,30\nc,Cold Salad,2001,,5\n",
    )
    data = load_directory(tmp_path)
    assert data.catalog.fields == ["genre", "cook_time"]
    assert data.catalog.values("genre", 0) == ("dessert", "baking")
    assert data.catalog.values("genre", 2) == ()
    assert math.isnan(data.catalog.years[1])
    assert data.matrix.shape == (2, 3)
    assert data.matrix.sum() == 3
    np.testing.assert_array_equal(data.history("u1"), [0, 1])


def test_canonical_parquet_and_unknown_items_kept(tmp_path):
    pd.DataFrame({"user_id": ["1", "1", "2"], "item_id": ["x", "y", "z"]}).to_parquet(
        tmp_path / "interactions.parquet"
    )
    pd.DataFrame({"item_id": ["x", "y"], "title": ["X (2000)", "Y"]}).to_parquet(
        tmp_path / "items.parquet"
    )
    data = load_directory(tmp_path)
    assert len(data.catalog) == 3  # z comes only from the interactions and is kept
    assert data.catalog.titles[data.catalog.position("z")] == "Item z"
    assert data.catalog.year(0) == 2000
    assert not data.has_timestamps


def test_missing_column_suggests_the_closest(tmp_path):
    _write_canonical(tmp_path, "user_id,itemid\n1,2\n", "item_id,title\n2,Two\n")
    with pytest.raises(DataError, match=r"missing column 'item_id'.*did you mean 'itemid'"):
        load_directory(tmp_path)


def test_empty_and_header_only_files(tmp_path):
    _write_canonical(tmp_path, "", "item_id,title\n2,Two\n")
    with pytest.raises(DataError, match="is empty"):
        load_directory(tmp_path)
    _write_canonical(tmp_path, "user_id,item_id\n", "item_id,title\n2,Two\n")
    with pytest.raises(DataError, match="no rows"):
        load_directory(tmp_path)


def test_bad_timestamp_and_unknown_directory(tmp_path):
    _write_canonical(tmp_path, "user_id,item_id,timestamp\n1,2,yesterday\n", "item_id,title\n2,T\n")
    with pytest.raises(DataError, match="timestamp"):
        load_directory(tmp_path)
    with pytest.raises(DataError, match="neither a known dataset"):
        load_dataset(str(tmp_path / "nope"))
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match="no known layout"):
        load_directory(tmp_path / "other")


def test_duplicate_item_ids_rejected(tmp_path):
    _write_canonical(tmp_path, "user_id,item_id\n1,2\n", "item_id,title\n2,A\n2,B\n")
    with pytest.raises(DataError, match="duplicate item ids"):
        load_directory(tmp_path)


def test_movielens_100k_layout(tmp_path):
    (tmp_path / "u.data").write_text("1\t10\t5\t100\n1\t20\t3\t200\n2\t10\t4\t150\n")
    flags_toy = "|".join(["0", "0", "0", "1", "1", "1"] + ["0"] * 13)
    flags_heat = "|".join(["0", "1"] + ["0"] * 17)
    (tmp_path / "u.item").write_bytes(
        f"10|Toy Story (1995)|01-Jan-1995||http://x|{flags_toy}\n"
        f"20|Heat (1995)|01-Jan-1995||http://y|{flags_heat}\n".encode("latin-1")
    )
    data = load_directory(tmp_path)
    assert data.catalog.values("genres", data.catalog.position("10")) == (
        "Animation",
        "Children",
        "Comedy",
    )
    assert data.catalog.values("genres", data.catalog.position("20")) == ("Action",)
    assert len(data) == 3


def test_movielens_1m_layout(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::10::5::100\n2::20::4::200\n")
    (tmp_path / "movies.dat").write_bytes(
        "10::Toy Story (1995)::Animation|Children's|Comedy\n20::Café (2001)::Drama\n".encode(
            "latin-1"
        )
    )
    data = load_directory(tmp_path)
    assert data.catalog.values("genres", 0) == ("Animation", "Children", "Comedy")
    assert data.catalog.titles[1] == "Café (2001)"
    assert data.catalog.values("decade", 1) == ("2000s",)


def _with_a_word_for_a_rating(folder):
    folder.mkdir()
    (folder / "interactions.csv").write_text(
        "user_id,item_id,rating\n1,a,4\n1,b,\n2,a,five\n2,b,3\n3,a,2\n"
    )
    (folder / "items.csv").write_text("item_id,title\na,Alpha\nb,Beta\n")
    return folder


def test_a_rating_that_is_not_a_number_names_file_and_line(tmp_path):
    from whyrec.data.loaders import load_dataset
    from whyrec.errors import DataError

    folder = _with_a_word_for_a_rating(tmp_path / "d")
    with pytest.raises(DataError, match=r"interactions.csv line 4: rating 'five'"):
        load_dataset(folder, min_rating=3)


def test_bad_rating_rows_can_be_skipped_and_are_counted(tmp_path, capsys):
    from whyrec.data.loaders import load_dataset

    folder = _with_a_word_for_a_rating(tmp_path / "d")
    dataset = load_dataset(folder, on_bad_rows="skip")
    assert len(dataset) == 4  # the empty rating stays (unrated), "five" is dropped
    assert "skipped 1 rows" in capsys.readouterr().err


def test_the_chunked_reader_checks_ratings_too(tmp_path):
    from whyrec.data.chunked import read_interactions_chunked
    from whyrec.data.loaders import bad_rows_policy
    from whyrec.errors import DataError

    folder = _with_a_word_for_a_rating(tmp_path / "d")
    path = folder / "interactions.csv"
    with pytest.raises(DataError, match="line 4"):
        read_interactions_chunked(path, chunk_rows=2)
    with bad_rows_policy("skip"):
        frame, _ = read_interactions_chunked(path, chunk_rows=2)
    assert len(frame) == 4 and list(frame["user_id"].astype(str)) == ["1", "1", "2", "3"]
