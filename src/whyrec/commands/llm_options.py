"""The `--llm` options that `chat` and `simulate` share, and how they become a config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
