"""Which catalog items a request allows: attribute values and a year range."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from whyrec.data.catalog import Catalog
from whyrec.errors import WhyrecError

_YEARS = re.compile(r"^\s*(\d{4})?\s*(?:-|–|\.\.)\s*(\d{4})?\s*$|^\s*(\d{4})\s*$")


@dataclass
class ItemFilter:
    """Hard constraints on items.

    `include` keeps items that have, for every named field, at least one of the listed
    values; `exclude` drops items that have any listed value; years are inclusive.
    `any_of` lists groups of (field, value) across fields, each met by having one of
    its values ("Crime or Film-Noir", or a genre or a tag).
    """

    include: dict[str, set[str]] = field(default_factory=dict)
    exclude: dict[str, set[str]] = field(default_factory=dict)
    year_min: int | None = None
    year_max: int | None = None
    any_of: list[list[tuple[str, str]]] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.include or self.exclude or self.year_min or self.year_max or self.any_of)

    def mask(self, catalog: Catalog) -> np.ndarray:
        allowed = np.ones(len(catalog), dtype=bool)
        for name, values in self.include.items():
            allowed &= catalog.mask_with_value(name, values)
        for name, values in self.exclude.items():
            allowed &= ~catalog.mask_with_value(name, values)
        for group in self.any_of:
            allowed &= any_of_mask(catalog, group)
        with np.errstate(invalid="ignore"):
            if self.year_min is not None:
                allowed &= catalog.years >= self.year_min
            if self.year_max is not None:
                allowed &= catalog.years <= self.year_max
        return allowed

    def to_dict(self) -> dict:
        return {
            "include": {k: sorted(v) for k, v in self.include.items()},
            "exclude": {k: sorted(v) for k, v in self.exclude.items()},
            "year_min": self.year_min,
            "year_max": self.year_max,
            **({"any_of": [[list(p) for p in g] for g in self.any_of]} if self.any_of else {}),
        }


def any_of_mask(catalog: Catalog, group: list[tuple[str, str]]) -> np.ndarray:
    """Items having at least one of the (field, value) pairs."""
    mask = np.zeros(len(catalog), dtype=bool)
    for name, value in group:
        if name in catalog.attributes:
            mask |= catalog.mask_with_value(name, [value])
    return mask


def parse_assignments(pairs: list[str] | None, flag: str) -> dict[str, set[str]]:
    """Parse ["genres=Comedy|Animation", "tags=pixar"] into {"genres": {...}, ...}."""
    parsed: dict[str, set[str]] = {}
    for pair in pairs or []:
        name, sep, values = pair.partition("=")
        if not sep or not name.strip() or not values.strip():
            raise WhyrecError(f"{flag} expects FIELD=VALUE[|VALUE...], got {pair!r}")
        parsed.setdefault(name.strip(), set()).update(
            v.strip() for v in values.split("|") if v.strip()
        )
    return parsed


def parse_years(text: str | None) -> tuple[int | None, int | None]:
    """Parse "1990-1999", "1990-", "-1999" or "1995" into an inclusive range."""
    if not text:
        return None, None
    found = _YEARS.match(text)
    if not found:
        raise WhyrecError(f"--years expects YEAR, FROM-TO, FROM- or -TO, got {text!r}")
    if found.group(3):
        year = int(found.group(3))
        return year, year
    low = int(found.group(1)) if found.group(1) else None
    high = int(found.group(2)) if found.group(2) else None
    if low is not None and high is not None and low > high:
        raise WhyrecError(f"--years range {text!r} runs backwards")
    return low, high


def validate_fields(item_filter: ItemFilter, catalog: Catalog) -> None:
    """Reject unknown fields and values early, with the closest known ones."""
    import difflib

    for name, values in [*item_filter.include.items(), *item_filter.exclude.items()]:
        if name not in catalog.attributes:
            raise WhyrecError(
                f"unknown attribute field {name!r}; fields: {', '.join(catalog.fields)}"
            )
        known = {v.lower(): v for v in catalog.value_counts(name)}
        for value in values:
            if value.lower() not in known:
                close = difflib.get_close_matches(value.lower(), list(known), n=3)
                hint = f"; did you mean {', '.join(known[c] for c in close)}?" if close else ""
                raise WhyrecError(f"no item has {name}={value!r}{hint}")
