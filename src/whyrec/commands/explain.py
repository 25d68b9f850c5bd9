"""`whyrec explain`: why (or why not) one item for a user or a list of liked titles."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from whyrec.commands.options import (
    BundleOpt,
    HistoryOpt,
    UserOpt,
    WithOpt,
    WithoutOpt,
    YearsOpt,
)

out = Console(highlight=False, soft_wrap=True)


def resolve_item(engine, reference: str) -> int:
    """An item id, else a (fuzzy) title; unknown ones raise a one-line NotFoundError."""
    reference = reference.strip()
    if engine.catalog.has(reference):
        return engine.catalog.position(reference)
    return engine.catalog.match_title(reference, engine.popularity).position


def explain_command(
    bundle: BundleOpt,
    item: Annotated[str, typer.Option(help="The item to explain: an item id or a title.")],
    user: UserOpt = None,
    history: HistoryOpt = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="Length of the list.")] = 10,
    with_value: WithOpt = None,
    without_value: WithoutOpt = None,
    years: YearsOpt = None,
    reasons: Annotated[int, typer.Option(min=1, max=50, help="History items cited.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print the evidence as JSON.")] = False,
) -> None:
    """Why an item is recommended to a user, or why it is not (rank, filters, what it lacks)."""
    from whyrec.bundle import Bundle
    from whyrec.commands.checks import check_k
    from whyrec.commands.options import resolve_request
    from whyrec.engine import Engine
    from whyrec.explain.render import sentences, to_json

    check_k(k)
    engine = Engine(Bundle.load(bundle))
    query = resolve_request(engine, user, history, with_value, without_value, years, k)
    position = resolve_item(engine, item)
    explanation = engine.explain(query, position, top_reasons=reasons)
    if as_json:
        print(to_json(explanation))
        return
    status = (
        f"#{explanation.rank} of the top {k}" if explanation.recommended else f"not in the top {k}"
    )
    out.print(f"[bold]{explanation.title}[/bold] ({status})")
    out.print(sentences(explanation))
    if explanation.history and explanation.recommended:
        cited = "; ".join(f"{c.title} ({c.share:.0%})" for c in explanation.history)
        out.print(f"[dim]history evidence ({explanation.history_method}): {cited}[/dim]")
    elif explanation.history:
        # outside the list, shares of a small net score mislead; show raw score terms
        helped = "; ".join(f"{c.title} (+{c.contribution:.3f})" for c in explanation.history)
        out.print(f"[dim]history evidence ({explanation.history_method}): {helped}[/dim]")
