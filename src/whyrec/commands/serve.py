"""`whyrec serve`: the HTTP API and the web chat page over one bundle."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from whyrec.commands.llm_options import NO_LLM_OPTIONS, LLMFlag, LLMOptions, with_llm_options
from whyrec.commands.options import BundleOpt
from whyrec.errors import WhyrecError

if TYPE_CHECKING:
    from whyrec.serve.service import ServiceConfig

err = Console(stderr=True, highlight=False, soft_wrap=True)


@with_llm_options
def serve(
    bundle: BundleOpt,
    db: Annotated[
        str, typer.Option(help="Store: a SQLite file, or a postgresql:// URL.")
    ] = "whyrec-sessions.sqlite",
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            help="Accepted X-API-Key, KEY or KEY:RATE requests a second (repeatable; default: "
            "$WHYREC_API_KEYS, comma-separated). A key without a rate is not rate-limited."
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    rate_limit: Annotated[
        float,
        typer.Option(
            min=0, help="Requests a second per chat session or anonymous caller (0: unlimited)."
        ),
    ] = 20.0,
    rate_burst: Annotated[int, typer.Option(min=1, help="Burst allowance per caller.")] = 40,
    max_body: Annotated[int, typer.Option(min=1024, help="Largest request body, bytes.")] = 65536,
    cors_origin: Annotated[
        list[str] | None, typer.Option(help="Origin allowed to call the API (repeatable).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    threads: Annotated[
        int | None,
        typer.Option(
            min=1, help="Request worker threads (default 1: handlers are CPU-bound; 40 with --llm)."
        ),
    ] = None,
    cache_size: Annotated[
        int, typer.Option(min=0, help="Recent /v1/recommend answers kept in memory (0: none).")
    ] = 4096,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Server processes sharing the port (each loads the bundle; use one per core).",
        ),
    ] = 1,
    llm: LLMFlag = False,
    llm_options: LLMOptions = NO_LLM_OPTIONS,
) -> None:
    """Serve the API (OpenAPI at /docs) and the chat page at / until interrupted."""
    import uvicorn

    from whyrec.commands.checks import check_store
    from whyrec.serve.app import create_app, prepare_server_process
    from whyrec.serve.security import api_keys_from
    from whyrec.serve.service import Service, ServiceConfig

    check_store(db)
    config = ServiceConfig(
        bundle=Path(bundle),
        db=db,
        api_keys=api_keys_from(api_key),
        rate_limit=rate_limit,
        rate_burst=rate_burst,
        max_body_bytes=max_body,
        cors_origins=list(cors_origin or []),
        cache_size=cache_size,
        worker_threads=threads,
        workers=workers,
        llm=llm_options.config(llm),
    )
    if workers > 1:
        serve_workers(config, host, port, log_level)
        return
    with err.status(f"loading {bundle} and opening {db.split('@')[-1]}"):
        service = Service.from_config(config)
    prepare_server_process()
    warn_if_open(config, host, port)
    err.print(f"whyrec serving {bundle} on http://{host}:{port}/ (API docs at /docs)")
    try:
        uvicorn.run(
            create_app(service, config),
            host=host,
            port=port,
            log_level=log_level,
            access_log=False,
        )
    finally:
        service.close()


def warn_if_open(config: ServiceConfig, host: str, port: int) -> None:
    """Said once everything checked out, so a refused start is one line only."""
    if not config.api_keys:
        err.print(
            "[yellow]warning:[/yellow] no API keys (--api-key or WHYREC_API_KEYS): anyone who "
            f"reaches {host}:{port} may call the API"
        )


def serve_workers(config: ServiceConfig, host: str, port: int, log_level: str) -> None:
    """Several worker processes on one port, sharing rate limits and metrics.

    The bundle and the store are checked here first (and the store's migrations run once,
    not raced by the workers), so a bad flag is one line, not N worker tracebacks.
    """
    import tempfile

    from whyrec.bundle import Bundle
    from whyrec.serve.app import rate_table
    from whyrec.serve.security import SharedRateLimiter
    from whyrec.serve.workers import Supervisor
    from whyrec.store import open_store

    if config.db == ":memory:":
        raise WhyrecError("--workers needs a database they share: a SQLite file or PostgreSQL")
    with err.status(f"checking {config.bundle} and {config.db.split('@')[-1]}"):
        Bundle.load(config.bundle)
        open_store(config.db).close()
    supervisor = Supervisor(config.workers, host, port, log_level)
    with tempfile.TemporaryDirectory(prefix="whyrec-serve-") as shared:
        metrics_dir = os.path.join(shared, "metrics")
        os.mkdir(metrics_dir)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        SharedRateLimiter.create(rate_table(shared))
        config.shared_dir = shared
        config.to_environment()
        warn_if_open(config, host, port)
        err.print(
            f"whyrec serving {config.bundle} on http://{host}:{supervisor.port}/ with "
            f"{config.workers} worker processes (API docs at /docs)"
        )
        supervisor.run()
