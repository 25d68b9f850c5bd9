"""`whyrec llm check`: is the configured LLM server usable, and how will whyrec talk to it."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from whyrec.commands.llm_options import NO_LLM_OPTIONS, LLMOptions, with_llm_options

llm_app = typer.Typer(help="The optional LLM server.", no_args_is_help=True)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


@llm_app.command("check")
@with_llm_options
def check(
    llm_options: LLMOptions = NO_LLM_OPTIONS,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """What the server supports, the dialect whyrec will use, a test call's latency.

    Exits 2 with one line saying what to change when whyrec cannot use the server.
    """
    from whyrec.llm import LLMError
    from whyrec.llm.check import check_server

    try:
        config = llm_options.config(True)
    except LLMError as exc:
        err.print(f"[red]LLM not configured: {exc}[/red]")
        raise typer.Exit(2) from None
    report = check_server(config)
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
    else:
        table = Table(title=f"LLM server {report.endpoint}", show_header=False)
        table.add_row("model", report.model)
        if report.served_models is not None:
            table.add_row("served models", ", ".join(report.served_models) or "none listed")
        if report.described is not None:
            described = report.described if report.described != "none" else "none published"
            table.add_row("server description", described)
        for form, verdict in report.forms.items():
            table.add_row(f"JSON via {form}", verdict)
        if report.ok:
            table.add_row("whyrec will use", f"{report.structured} for JSON, tools: {report.tools}")
            if report.latency is not None:
                table.add_row("test call", f"{report.latency:.2f} s, {report.tokens} tokens")
        for note in report.notes:
            table.add_row("note", note)
        out.print(table)
    if not report.ok:
        err.print(f"[red]LLM unusable: {report.problem}; {report.advice}[/red]")
        raise typer.Exit(2)
