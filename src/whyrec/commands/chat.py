"""`whyrec chat`: talk to a bundle in the terminal, or script it through standard input."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from whyrec.commands.llm_options import NO_LLM_OPTIONS, LLMFlag, LLMOptions, with_llm_options
from whyrec.errors import WhyrecError

console = Console(highlight=False, soft_wrap=True)


def default_session_db() -> Path:
    """$WHYREC_SESSION_DB, else ~/.local/share/whyrec/sessions.sqlite (outlives retraining)."""
    configured = os.environ.get("WHYREC_SESSION_DB")
    return Path(configured) if configured else Path.home() / ".local/share/whyrec/sessions.sqlite"


@with_llm_options
def chat(
    bundle: Annotated[Path, typer.Option(help="A bundle folder written by `whyrec train`.")],
    user: Annotated[
        str | None, typer.Option(help="Talk as this user of the training data.")
    ] = None,
    session: Annotated[str | None, typer.Option(help="Resume a stored session by id.")] = None,
    db: Annotated[
        str | None, typer.Option(help="Session database: a SQLite file or a postgresql:// URL.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per turn.")] = False,
    llm: LLMFlag = False,
    llm_options: LLMOptions = NO_LLM_OPTIONS,
) -> None:
    """Conversational recommendations. Reads one message per line when stdin is not a terminal."""
    from whyrec.bundle import Bundle
    from whyrec.commands.checks import check_store
    from whyrec.engine import Engine
    from whyrec.jsonout import dumps
    from whyrec.llm import open_conversation
    from whyrec.store import open_store

    if user is not None and session is not None:
        raise WhyrecError("give --user to start a session or --session to resume one, not both")
    target = check_store(db or str(default_session_db()))
    config = llm_options.config(llm)
    conversation = open_conversation(
        Engine(Bundle.load(bundle)), store=open_store(target), llm=config
    )
    current = conversation.resume(session) if session else conversation.start(user)
    interactive = sys.stdin.isatty() and not as_json
    if interactive:
        console.print(
            f"[dim]session {current.id} — e.g. '{conversation.example_request()}'; "
            "'why the first one?', 'none of these', 'start over'; Ctrl-D to quit[/dim]"
        )
        if config is not None:
            console.print(f"[dim]LLM: {config.describe()}[/dim]")
    for message in _typed() if interactive else _piped(current.id):
        if not interactive and not message.strip():
            continue
        turn = current.send(message)
        if as_json:
            print(dumps({"session_id": current.id, **turn.to_dict()}), flush=True)
        elif interactive:
            _render(turn)
        else:
            print(turn.reply, flush=True)


def _typed() -> Iterator[str]:
    """Messages typed at the terminal, until Ctrl-D."""
    while True:
        try:
            yield console.input("[bold cyan]you>[/bold cyan] ")
        except EOFError:
            return


def _piped(session_id: str) -> Iterator[str]:
    """One message per line of standard input, decoded line by line: a line that is not
    UTF-8 stops the conversation with its line number, after the lines before it."""
    for number, raw in enumerate(sys.stdin.buffer, start=1):
        try:
            yield raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise WhyrecError(
                f"line {number} of standard input is not UTF-8 text; the messages before it "
                f"are saved in session {session_id}"
            ) from None


def _render(turn) -> None:
    fallbacks = turn.trace.get("llm", {}).get("fallbacks") if turn.trace else None
    if fallbacks:
        console.print(f"[dim](the LLM did not help with: {', '.join(fallbacks)})[/dim]")
    if not turn.items or turn.trace:
        console.print(f"[bold green]whyrec>[/bold green] {turn.reply}")
        return
    console.print(f"[bold green]whyrec>[/bold green] {turn.reply.splitlines()[0]}")
    table = Table(show_header=True)
    table.add_column("#", justify="right")
    table.add_column("title")
    table.add_column("why")
    for rank, item in enumerate(turn.items, start=1):
        table.add_row(str(rank), item["title"], item["explanation"]["text"])
    console.print(table)
