"""Wording of the system's turns. Only text: what to say was decided elsewhere."""

from __future__ import annotations

from whyrec.data.catalog import Catalog


def question_text(field_name: str, value: str, kind: str = "value") -> str:
    """A yes/no question about one value, worded by how the value was derived (a plain
    label, a category path or a number range), never by which field it is."""
    if kind == "range":
        low, _, high = value.partition("–")
        return f"Should its {field_name} be between {low} and {high}?"
    if kind == "path":
        leaf = value.rpartition(">")[2].strip()
        where = f" (under {value.rpartition('>')[0].strip()})" if ">" in value else ""
        return f"Are you looking for {leaf}{where}?"
    return f"Should it have {field_name} '{value}'?"


def follow_up_text(field_name: str, value: str, kind: str = "value") -> str:
    """The question that rides along with a first list: for a user it finds nothing for."""
    question = question_text(field_name, value, kind)
    return f"If none of these fits, tell me: {question[0].lower()}{question[1:]}"


def confirm_title_text(title: str) -> str:
    return f"Did you mean {title}?"


def contradiction_text(what: str) -> str:
    value = what.partition("=")[2]
    if value:
        return (
            f"You said both that you want and that you don't want {value}. "
            f"Which is it: {value} or no {value}?"
        )
    return f"The {what} you asked for cannot both hold. Which range do you mean?"


def describe_constraints(
    include: dict[str, list[str]],
    exclude: dict[str, list[str]],
    year_min: int | None,
    year_max: int | None,
) -> str:
    """A short phrase for what the list respects: "Comedy, 1990-1999, no Horror"."""
    parts = [v for values in include.values() for v in values]
    if year_min and year_max:
        parts.append(f"{year_min}-{year_max}" if year_min != year_max else str(year_min))
    elif year_min:
        parts.append(f"from {year_min} on")
    elif year_max:
        parts.append(f"up to {year_max}")
    parts += [f"no {v}" for values in exclude.values() for v in values]
    return ", ".join(parts)


def recommendation_text(catalog: Catalog, items: list[dict], constraints: str, first: bool) -> str:
    intro = "Here are some picks" if first else "How about these"
    intro += f" ({constraints})" if constraints else ""
    return "\n".join([f"{intro}:", *item_lines(items)])


def item_lines(items: list[dict]) -> list[str]:
    """One line per recommended item: rank, title and why (its explanation's text)."""
    return [
        f"{rank}. {item['title']} — {item['explanation']['text']}"
        for rank, item in enumerate(items, start=1)
    ]


def no_candidates_text(constraints: str) -> str:
    return (
        f"Nothing in the catalog matches all of that ({constraints}). "
        "Could you drop one of the conditions?"
    )


def missing_facets_text(catalog: Catalog, said) -> str:
    """ "This catalog does not know directors, so 'Christopher Nolan' cannot be searched as
    one; I used the tag 'christopher nolan' instead." """
    sentences = []
    used = [c.value for c in said.constraints if c.include]
    for facet, argument in said.missing_facets:
        plural = facet if facet.endswith("s") else f"{facet}s"
        what = f" (so not '{argument}' as one)" if argument else ""
        sentence = f"This catalog does not know {plural}{what}"
        matched = [v for v in used if argument and v.lower() == argument.lower()]
        if matched:
            sentence += f"; I used the {_field_of(said, matched[0])} '{matched[0]}' instead"
        sentences.append(sentence + ".")
    return " ".join(sentences)


def _field_of(said, value: str) -> str:
    for c in said.constraints:
        if c.value == value:
            return c.field.rstrip("s") if c.field.endswith("s") else c.field
    return "value"


def offer_text(catalog: Catalog) -> str:
    """What the catalog can search by, when the request named only what it lacks."""
    fields = list(catalog.fields)
    known = ", ".join([*fields, "years"])
    return (
        f"I can search by {known}, or find titles like ones you name: tell me one you "
        "liked, or what it should be like."
    )
