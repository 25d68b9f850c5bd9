"""The `--llm-*` options every LLM-using command shares, and how they become a config.

A command decorated with `with_llm_options` takes one `llm_options: LLMOptions` argument;
the decorator shows typer the five options instead, so they are declared (and their help
written) once.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

LLMFlag = Annotated[
    bool,
    typer.Option(
        "--llm",
        help="Put an OpenAI-compatible LLM in front (configured by the --llm-* options, "
        "WHYREC_LLM_* variables or ~/.config/whyrec/llm.toml).",
    ),
]
LLMBaseURL = Annotated[
    str | None, typer.Option("--llm-base-url", help="Server URL, e.g. http://localhost:8000/v1.")
]
LLMModel = Annotated[str | None, typer.Option("--llm-model", help="Model name on that server.")]
LLMApiKey = Annotated[
    str | None, typer.Option("--llm-api-key", help="API key (prefer $WHYREC_LLM_API_KEY).")
]
LLMTimeout = Annotated[
    float | None,
    typer.Option("--llm-timeout", help="Seconds of LLM time per turn before falling back."),
]
LLMConfigFile = Annotated[
    Path | None, typer.Option("--llm-config", help="TOML file with the LLM settings.")
]


def llm_config_from(
    enabled: bool,
    base_url: str | None = None,
    model: str | None = None,
    api_key: str | None = None,
    timeout: float | None = None,
    config_file: Path | None = None,
):
    """The LLM config when the LLM is asked for (`--llm` or any --llm-* value), else None.

    Asking for it without a server or model anywhere is a mistake worth one clear line.
    """
    from whyrec.llm import LLMError, load_llm_config

    if not (enabled or base_url or model or config_file):
        return None
    config = load_llm_config(
        config_file, base_url=base_url, model=model, api_key=api_key, timeout=timeout
    )
    if not config.configured:
        raise LLMError(
            "--llm needs a server: give --llm-base-url/--llm-model, set WHYREC_LLM_BASE_URL "
            "and WHYREC_LLM_MODEL, or write ~/.config/whyrec/llm.toml"
        )
    return config


@dataclass(frozen=True)
class LLMOptions:
    """The values of the `--llm-*` options as given (None where absent)."""

    base_url: str | None = None
    model: str | None = None
    api_key: str | None = None
    timeout: float | None = None
    config_file: Path | None = None

    def config(self, enabled: bool):
        """`llm_config_from` with these values."""
        return llm_config_from(
            enabled, self.base_url, self.model, self.api_key, self.timeout, self.config_file
        )


NO_LLM_OPTIONS = LLMOptions()
"""The default a decorated command declares (the decorator always passes the real ones)."""

_OPTIONS: dict[str, tuple[Any, str]] = {
    "llm_base_url": (LLMBaseURL, "base_url"),
    "llm_model": (LLMModel, "model"),
    "llm_api_key": (LLMApiKey, "api_key"),
    "llm_timeout": (LLMTimeout, "timeout"),
    "llm_config": (LLMConfigFile, "config_file"),
}


def with_llm_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the `--llm-*` options, passed to it as `llm_options: LLMOptions`.

    Typer reads the signature: this one has the command's own parameters (annotations
    evaluated) less `llm_options`, then the five options."""
    own = inspect.signature(command, eval_str=True).parameters.values()
    parameters = [p for p in own if p.name != "llm_options"] + [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=hint)
        for name, (hint, _) in _OPTIONS.items()
    ]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {field: kwargs.pop(name, None) for name, (_, field) in _OPTIONS.items()}
        return command(*args, llm_options=LLMOptions(**values), **kwargs)

    wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper
