"""Turn an `Explanation` into words or JSON. No evidence is computed here, only phrased.

Sentences are plain and short: one for the history items and the attribute values they
share with the item, one for the other users and the stated constraints. Field names
with a known phrasing (genres, decade, tags) read naturally; any other field falls back
to "with FIELD VALUE", so user data with its own columns still renders.
"""

from __future__ import annotations

from whyrec.explain.attribution import EXACT, GENERATION_PATH
from whyrec.explain.explanation import (
    TERM_CLOSE_TO_LIKED,
    TERM_DISLIKES,
    TERM_HISTORY,
    TERM_MATCH,
    TERM_NEIGHBOURS,
    TERM_POPULARITY,
    TERM_PREFERRED,
    TERM_STEERING,
    TERM_WISHES,
    ConstraintCheck,
    DescriptionMatch,
    Explanation,
    SharedValue,
)


def _join(words: list[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} and {words[-1]}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def describe_values(values: list[SharedValue] | list[tuple[str, str]]) -> str:
    """Phrase attribute values: "a comedy and animation title from the 1990s, tagged pixar"."""
    pairs = [(v.field, v.value) if isinstance(v, SharedValue) else v for v in values]
    genres = [value.lower() for name, value in pairs if name in ("genres", "genre")]
    decades = [value for name, value in pairs if name == "decade"]
    tags = [f'"{value}"' for name, value in pairs if name == "tags"]
    others = [
        f"{name} {value}"
        for name, value in pairs
        if name not in ("genres", "genre", "decade", "tags")
    ]
    parts = []
    if genres:
        kinds = _join(genres)
        parts.append(f"{_article(kinds)} {kinds} title")
    if decades:
        parts.append(f"from the {_join(decades)}")
    if tags:
        parts.append(f"tagged {_join(tags)}")
    if others:
        parts.append(f"with {_join(others)}")
    return ", ".join(parts)


def _constraint_phrase(check: ConstraintCheck) -> str:
    wanted = " or ".join(check.wanted)
    if check.kind == "include":
        return f"{check.field} {wanted}"
    if check.kind == "exclude":
        return f"no {check.field} {wanted}"
    if check.kind == "year_min":
        return f"from {wanted} on"
    return f"up to {wanted}"


def _share_phrase(explanation: Explanation) -> str:
    share = f"{explanation.cited_share:.0%}"
    if explanation.history_method == EXACT:
        # with named terms, the history's part is the model's score, not the whole sum
        whose = "the model's score" if explanation.terms else "this score"
        return f"{share} of {whose}"
    return f"{share} of the score lost when each is left out"


def _signed(value: float) -> str:
    return f"{value:+.2f}".replace("-", "−")


_TERM_WORDS = {
    TERM_HISTORY: "your history",
    TERM_POPULARITY: "how well known it is",
    TERM_MATCH: "the text match",
    TERM_NEIGHBOURS: "titles chosen with it",
    TERM_DISLIKES: "what you turned down",
    TERM_PREFERRED: "values you prefer",
    TERM_CLOSE_TO_LIKED: "closeness to titles you liked",
    TERM_WISHES: "what you described",
    TERM_STEERING: "how you steered the list",
}


def terms_sentence(terms: dict[str, float]) -> str:
    """The named terms a score adds up from, largest first: 'Its score adds up from how
    well known it is +4.10 and what you described +1.20.'"""
    shown = sorted((kv for kv in terms.items() if kv[1]), key=lambda kv: -abs(kv[1]))
    if not shown:
        return ""
    named = [f"{_TERM_WORDS.get(name, name)} {_signed(value)}" for name, value in shown]
    return f"Its score adds up from {_join(named)}."


def description_sentence(match: DescriptionMatch, terms: dict[str, float]) -> str:
    """A description's terms, each with its exact part of the score: 'It fits "a heist
    film" (+1.92: tagged "heist"); 119 people chose it (+0.84); titles chosen with it fit
    too: Heat, Ronin (+0.41).'"""
    named = describe_values([(name, value) for name, value, _ in match.values])
    fitted = terms.get(TERM_MATCH, 0.0)
    verb = "fits" if fitted >= 0 else "barely fits"
    fit = f'It {verb} "{match.text}" ({_signed(fitted)}'
    fit += f": {named})" if named else ")"
    pieces = [fit]
    if TERM_POPULARITY in terms:
        people = "person" if match.chosen_by == 1 else "people"
        pieces.append(f"{match.chosen_by} {people} chose it ({_signed(terms[TERM_POPULARITY])})")
    if TERM_NEIGHBOURS in terms:
        lifted = f": {_join(list(match.neighbours))}" if match.neighbours else ""
        pieces.append(f"titles chosen with it fit too{lifted} ({_signed(terms[TERM_NEIGHBOURS])})")
    if TERM_HISTORY in terms:
        pieces.append(f"your history adds {_signed(terms[TERM_HISTORY])}")
    return "; ".join(pieces) + "."


def recommendation_sentences(explanation: Explanation) -> str:
    """One or two sentences saying why a recommended item is there: the history items
    behind it, then other users, constraints and confidence. A list ranked by a sum of
    named terms says them too: a description's match first, a conversation's terms after
    the history."""
    titles = [c.title for c in explanation.history]
    match = explanation.description
    if match is not None:
        lead = description_sentence(match, explanation.terms) + " "
        terms = ""
    else:
        lead = ""
        terms = terms_sentence(explanation.terms)
    if titles and explanation.history_method == GENERATION_PATH:
        first = _generation_path_sentence(explanation, titles)
    elif titles:
        first = f"Because you liked {_join(titles)} ({_share_phrase(explanation)})"
        shared = describe_values(explanation.shared_values)
        if shared:
            first += f"; like {'them' if len(titles) > 1 else 'it'}, it is {shared}"
        first += "."
    elif match is not None or terms:
        first = ""
    else:
        first = (
            f"{explanation.title} is not explained by any single item you liked; "
            "the model ranks it high overall."
        )
    text = " ".join(part for part in (lead.strip(), first, terms) if part)
    return text + _second_sentence(explanation)


def _second_sentence(explanation: Explanation) -> str:
    """Other users, the stated constraints met, and the confidence, as one sentence."""
    second_parts = []
    collab = explanation.collaborative
    if collab and collab.users_with_cited:
        those = "them" if len(collab.cited_item_ids) > 1 else "it"
        second_parts.append(
            f"{collab.users_with_both} of the {collab.users_with_cited} other users who liked "
            f"{those} also liked this one"
        )
    met = [c for c in explanation.constraints if c.satisfied]
    if met:
        second_parts.append(
            f"it matches your request ({_join([_constraint_phrase(c) for c in met])})"
        )
    if explanation.confidence is not None:
        second_parts.append(f"confidence {explanation.confidence.label}")
    if not second_parts:
        return ""
    text = "; ".join(second_parts)
    return f" {text[0].upper()}{text[1:]}."


def _generation_path_sentence(explanation: Explanation, titles: list[str]) -> str:
    """The generation path as a sentence: the clusters of the item's index that the cited
    history items share, coarse to fine (`shared_values` holds one per index level)."""
    path = " › ".join(v.value for v in explanation.shared_values)
    depth = len(explanation.shared_values)
    if not path:
        return f"Because you liked {_join(titles)}, which share the start of its index."
    levels = "level" if depth == 1 else f"{depth} levels"
    return f"Generated along {path}; you liked {_join(titles)}, which share its first {levels}."


def why_not_sentences(explanation: Explanation) -> str:
    """Why an item is not in the list: rank, filters, missing values, items pushing it down."""
    why = explanation.why_not
    if why is None:
        return recommendation_sentences(explanation)
    title = explanation.title
    if not why.scorable:
        return f"{title} cannot be ranked: the model has no data on it."
    sentences = []
    if why.rank is not None:
        cutoff = (
            f" (score {explanation.score:.3f}, the {_ordinal(why.k)} has {why.cutoff_score:.3f})"
        )
        sentences.append(
            f"{title} is {_ordinal(why.rank)} for you, below the top {why.k}"
            + (cutoff if why.cutoff_score is not None else "")
            + "."
        )
    elif why.filter_violations:
        broken = _join([_constraint_phrase(c) for c in why.filter_violations])
        where = f" (it would be {_ordinal(why.rank_unfiltered)})" if why.rank_unfiltered else ""
        sentences.append(f"{title} is ruled out by your request: {broken}{where}.")
    else:
        sentences.append(f"{title} is excluded from this list.")
    reasons = []
    if why.missing_values:
        lacking = _join([m.value for m in why.missing_values])
        reasons.append(f"unlike the top items it lacks {lacking}, which your history favours")
    if why.pushing_down:
        verb = "push" if len(why.pushing_down) > 1 else "pushes"
        reasons.append(f"{_join([c.title for c in why.pushing_down])} {verb} it down")
    if reasons:
        text = "; ".join(reasons)
        sentences.append(f"{text[0].upper()}{text[1:]}.")
    return " ".join(sentences)


def sentences(explanation: Explanation) -> str:
    """The right text for any explanation: why, or why not."""
    if explanation.recommended:
        return recommendation_sentences(explanation)
    return why_not_sentences(explanation)


def to_data(explanation: Explanation, with_text: bool = True) -> dict:
    """The evidence as JSON-ready data, with the rendered sentences under "text" when
    asked: the one serialized form the CLI, the API and item lists share."""
    data = explanation.to_dict()
    if with_text:
        data["text"] = sentences(explanation)
    return data


def to_json(explanation: Explanation, with_text: bool = True) -> str:
    """`to_data` as strict JSON (an undefined number is null)."""
    from whyrec.jsonout import dumps

    return dumps(to_data(explanation, with_text))
