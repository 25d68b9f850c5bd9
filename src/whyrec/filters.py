"""Which catalog items a request allows: the one hard-constraint type of every shell.

The CLI (`--with/--without/--years`), the API (`filters`), the conversation (values
asked for, ruled out, years, items already shown or disliked) and the LLM tools all
express their hard constraints as an `ItemFilter`; the engine applies it with `mask`
and the explainer reports how an item meets it with `checks`. A new kind of constraint
is one field here (its `mask` and `checks` lines) plus the shell that parses it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from whyrec.data.catalog import Catalog
from whyrec.errors import WhyrecError
from whyrec.ranking import is_member

_YEARS = re.compile(r"^\s*(\d{4})?\s*(?:-|–|\.\.)\s*(\d{4})?\s*$|^\s*(\d{4})\s*$")


@dataclass(frozen=True)
class ConstraintCheck:
    """How the item meets one constraint the user stated.

    `kind` is include (must have one of `wanted`), require (must have it), exclude (must
    have none), year_min, year_max or exclude_years; `item_values` are the item's own
    values of that field (or its year).
    """

    kind: str
    field: str
    wanted: tuple[str, ...]
    item_values: tuple[str, ...]
    satisfied: bool

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "field": self.field,
            "wanted": list(self.wanted),
            "item_values": list(self.item_values),
            "satisfied": self.satisfied,
        }


@dataclass
class ItemFilter:
    """Hard constraints on items; an item is allowed when it meets all of them.

    `include` keeps items that have, for every named field, at least one of the listed
    values; `require` keeps items that have every listed value (a conversation's "a
    funny animated film" wants both); `exclude` drops items that have any listed value;
    years are inclusive, `excluded_years` drops inclusive ranges; `blocked` drops item
    positions outright (already seen, shown or disliked). Values match case-insensitively.
    `any_of` lists groups of (field, value) across fields, each met by having one of its
    values ("Crime or Film-Noir", or a genre or a tag).
    """

    include: dict[str, set[str]] = field(default_factory=dict)
    exclude: dict[str, set[str]] = field(default_factory=dict)
    year_min: int | None = None
    year_max: int | None = None
    require: dict[str, set[str]] = field(default_factory=dict)
    excluded_years: list[tuple[int, int]] = field(default_factory=list)
    blocked: frozenset[int] = frozenset()
    any_of: list[list[tuple[str, str]]] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (
            self.any_of
            or self.include
            or self.exclude
            or self.year_min
            or self.year_max
            or self.require
            or self.excluded_years
            or self.blocked
        )

    def mask(self, catalog: Catalog, among: np.ndarray | None = None) -> np.ndarray:
        """The allowed items, as a boolean mask over the catalog, or over the positions
        `among` only (the same rule, for a request that ranks a few candidates)."""
        allowed = np.ones(len(catalog) if among is None else len(among), dtype=bool)
        for name, values in self.include.items():
            allowed &= catalog.mask_with_value(name, values, among)
        for name, values in self.require.items():
            for value in values:
                allowed &= catalog.mask_with_value(name, [value], among)
        for name, values in self.exclude.items():
            allowed &= ~catalog.mask_with_value(name, values, among)
        for group in self.any_of:
            allowed &= any_of_mask(catalog, group, among)
        years = catalog.years if among is None else catalog.years[among]
        with np.errstate(invalid="ignore"):
            if self.year_min is not None:
                allowed &= years >= self.year_min
            if self.year_max is not None:
                allowed &= years <= self.year_max
            for low, high in self.excluded_years:
                allowed &= ~((years >= low) & (years <= high))
        if self.blocked:
            blocked = np.fromiter(self.blocked, dtype=np.int64)
            if among is None:
                allowed[blocked] = False
            else:
                allowed &= ~is_member(among, blocked)
        return allowed

    def checks(self, catalog: Catalog, position: int) -> list[ConstraintCheck]:
        """How one item meets each stated constraint (blocked items are not a preference
        the user stated, so they get no check)."""
        checks = []
        groups = (("include", self.include), ("exclude", self.exclude))
        for kind, constraints in groups:
            for name, wanted in constraints.items():
                have = catalog.values(name, position)
                hit = _has_any(have, wanted)
                checks.append(
                    ConstraintCheck(
                        kind,
                        name,
                        tuple(sorted(wanted)),
                        have,
                        hit if kind == "include" else not hit,
                    )
                )
        for name, wanted in self.require.items():
            have = catalog.values(name, position)
            for value in sorted(wanted):
                checks.append(
                    ConstraintCheck("require", name, (value,), have, _has_any(have, [value]))
                )
        for group in self.any_of:
            pairs = tuple(f"{f}={v}" for f, v in group)
            have = tuple(
                f"{f}={v}" for f in {f for f, _ in group} for v in catalog.values(f, position)
            )
            ok = any(
                _has_any(catalog.values(f, position), [v])
                for f, v in group
                if f in catalog.attributes
            )
            checks.append(ConstraintCheck("any_of", "", pairs, have, ok))
        year = catalog.year(position)
        year_values = () if year is None else (str(year),)
        if self.year_min is not None:
            ok = year is not None and year >= self.year_min
            checks.append(
                ConstraintCheck("year_min", "year", (str(self.year_min),), year_values, ok)
            )
        if self.year_max is not None:
            ok = year is not None and year <= self.year_max
            checks.append(
                ConstraintCheck("year_max", "year", (str(self.year_max),), year_values, ok)
            )
        for low, high in self.excluded_years:
            ok = year is None or not low <= year <= high
            checks.append(
                ConstraintCheck("exclude_years", "year", (f"{low}-{high}",), year_values, ok)
            )
        return checks

    def to_dict(self) -> dict:
        data = {
            "include": {k: sorted(v) for k, v in self.include.items()},
            "exclude": {k: sorted(v) for k, v in self.exclude.items()},
            "year_min": self.year_min,
            "year_max": self.year_max,
        }
        if self.require:
            data["require"] = {k: sorted(v) for k, v in self.require.items()}
        if self.excluded_years:
            data["excluded_years"] = [list(r) for r in self.excluded_years]
        if self.blocked:
            data["blocked"] = sorted(self.blocked)
        if self.any_of:
            data["any_of"] = [[list(pair) for pair in group] for group in self.any_of]
        return data


def _has_any(have: Iterable[str], wanted: Iterable[str]) -> bool:
    return bool({v.lower() for v in have} & {w.lower() for w in wanted})


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

    named = [*item_filter.include.items(), *item_filter.require.items()]
    for name, values in [*named, *item_filter.exclude.items()]:
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


def any_of_mask(
    catalog: Catalog, group: list[tuple[str, str]], among: np.ndarray | None = None
) -> np.ndarray:
    """Items (of the catalog, or the positions `among`) having one of the (field, value) pairs."""
    mask = np.zeros(len(catalog) if among is None else len(among), dtype=bool)
    for name, value in group:
        if name in catalog.attributes:
            mask |= catalog.mask_with_value(name, [value], among)
    return mask
