"""Title matching, history parsing and item filters."""

from __future__ import annotations

import numpy as np
import pytest

from whyrec.commands.options import split_history
from whyrec.data.catalog import title_key
from whyrec.errors import NotFoundError, WhyrecError
from whyrec.filters import ItemFilter, parse_assignments, parse_years, validate_fields


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Toy Story (1995)", "Toy Story (1995)"),
        ("toy story", "Toy Story (1995)"),
        ("Toy Stroy", "Toy Story (1995)"),
        ("the american president", "American President, The (1995)"),
        ("American President, The (1995)", "American President, The (1995)"),
        ("1", "Toy Story (1995)"),
        ("Heat", "Heat (1995)"),
        ("jurassic prak", "Jurassic Park (1993)"),
    ],
)
def test_title_matching(ml_small, query, expected):
    popularity = ml_small.item_popularity()
    match = ml_small.catalog.match_title(query, popularity)
    assert ml_small.catalog.titles[match.position] == expected


def test_unknown_title_suggests_close_ones(ml_small):
    with pytest.raises(NotFoundError, match="did you mean"):
        ml_small.catalog.match_title("zzqx vortex banana")


def test_title_key_moves_articles():
    assert title_key("American President, The (1995)") == "the american president 1995"
    assert title_key("American President, The (1995)", keep_year=False) == "the american president"


def test_split_history_keeps_titles_with_commas():
    assert split_history("Toy Story (1995),American President, The (1995), Heat") == [
        "Toy Story (1995)",
        "American President, The (1995)",
        "Heat",
    ]
    assert split_history("a, b; c") == ["a, b", "c"]
    assert split_history("Monsters, Inc. (2001),Heat") == ["Monsters, Inc. (2001)", "Heat"]


def test_filters(ml_small):
    catalog = ml_small.catalog
    low, high = parse_years("1990-1999")
    item_filter = ItemFilter(
        include=parse_assignments(["genres=Animation"], "--with"),
        exclude=parse_assignments(["genres=Horror|Thriller"], "--without"),
        year_min=low,
        year_max=high,
    )
    validate_fields(item_filter, catalog)
    mask = item_filter.mask(catalog)
    kept = np.flatnonzero(mask)
    assert catalog.position("1") in kept
    for pos in kept:
        assert "Animation" in catalog.values("genres", pos)
        assert 1990 <= catalog.years[pos] <= 1999
        assert not {"Horror", "Thriller"} & set(catalog.values("genres", pos))
    assert parse_years("2010-") == (2010, None)
    assert parse_years("1995") == (1995, 1995)


def test_bad_filters(ml_small):
    with pytest.raises(WhyrecError, match="did you mean Comedy"):
        validate_fields(ItemFilter(include={"genres": {"Comedi"}}), ml_small.catalog)
    with pytest.raises(WhyrecError, match="unknown attribute field"):
        validate_fields(ItemFilter(include={"mood": {"x"}}), ml_small.catalog)
    with pytest.raises(WhyrecError, match="FIELD=VALUE"):
        parse_assignments(["genres"], "--with")
    with pytest.raises(WhyrecError, match="backwards"):
        parse_years("2000-1990")
