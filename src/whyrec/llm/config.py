"""Where the LLM lives and how patient to be with it: flags, environment or a TOML file.

Precedence, highest first: explicit values (command-line flags, API arguments), the
environment (`WHYREC_LLM_BASE_URL`, `WHYREC_LLM_MODEL`, `WHYREC_LLM_API_KEY`,
`WHYREC_LLM_TIMEOUT` in seconds, `WHYREC_LLM_CONFIG` naming a file), then the file
(`--llm-config`, else `$WHYREC_LLM_CONFIG`, else `~/.config/whyrec/llm.toml` when it
exists). The file holds the same keys, at the top level or under an `[llm]` table:

    base_url = "http://localhost:11434/v1"
    model = "llama3.1"
    timeout = 20
    token_budget = 40000

With no base URL and no model anywhere, the LLM is not configured and whyrec runs on
its embedded engine exactly as without this module.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from whyrec.errors import WhyrecError

ENV_PREFIX = "WHYREC_LLM_"
DEFAULT_FILE = Path("~/.config/whyrec/llm.toml")
DEFAULT_BASE_URL = "https://api.openai.com/v1"


class LLMError(WhyrecError):
    """The LLM configuration is unusable (the LLM being down is not an error: we fall back)."""


class LLMConfig(BaseModel):
    """Settings of the LLM layer. Every field has a default that works with a local server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str | None = None
    """OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (vLLM), .../11434/v1
    (Ollama). None with a model set means the OpenAI API itself."""
    model: str | None = None
    """Model name as the server knows it."""
    api_key: str | None = Field(default=None, repr=False)
    """Sent as a bearer token; local servers accept any (we send "none" when unset)."""
    timeout: float = Field(default=20.0, gt=0, le=600)
    """Seconds one turn may spend waiting on the LLM in all (calls and retries together);
    past it the turn is answered by the embedded engine."""
    max_retries: int = Field(default=2, ge=0, le=10)
    """Retries of one call after a 429, a 5xx, a timeout or a dropped connection."""
    backoff: float = Field(default=0.5, ge=0, le=30)
    """First retry delay in seconds, doubled each retry (a server's Retry-After wins)."""
    token_budget: int = Field(default=60_000, ge=0)
    """Tokens (prompt + completion, as the server reports them) one session may spend;
    after that the session continues on the embedded engine."""
    cache_size: int = Field(default=512, ge=0)
    """Responses kept in memory, keyed by the whole request (0 disables the cache)."""
    cooldown: float = Field(default=30.0, ge=0)
    """After the LLM was unreachable, seconds to skip it before trying again."""
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(default=800, ge=16)
    """Completion limit of one call."""
    json_mode: Literal["auto", "json_schema", "json_object", "prompt"] = "auto"
    """How structured output is requested. "auto" starts with a JSON schema
    (`json_schema`: OpenAI, vLLM, Ollama) and, when the server rejects that, falls back
    to `json_object` carrying the schema (llama.cpp turns it into a grammar), then to
    JSON asked for in the prompt alone; the first that works is kept for the server.
    A fixed value uses that one form only."""
    tools: Literal["auto", "native", "json"] = "auto"
    """How the agent plans: "native" tool calls, or a "json" plan in the message
    content; "auto" asks the server once whether it returns tool calls."""

    @property
    def configured(self) -> bool:
        return bool(self.base_url or self.model)

    @property
    def endpoint(self) -> str:
        return self.base_url or DEFAULT_BASE_URL

    def describe(self) -> str:
        """One line for logs and banners, without the key."""
        return f"{self.model or '(server default)'} at {self.endpoint}, timeout {self.timeout:g}s"


def _from_file(path: Path, required: bool) -> dict[str, Any]:
    path = path.expanduser()
    if not path.exists():
        if required:
            raise LLMError(f"LLM config file {path} does not exist")
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise LLMError(f"cannot read LLM config {path}: {exc}") from None
    section = data.get("llm", data)
    if not isinstance(section, dict):
        raise LLMError(f"LLM config {path}: [llm] must be a table")
    return section


def _from_env(environ: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in LLMConfig.model_fields:
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is not None and raw.strip():
            values[name] = raw.strip()
    return values


def load_llm_config(
    config_file: Path | None = None,
    environ: dict[str, str] | None = None,
    **explicit: Any,
) -> LLMConfig:
    """Merge file, environment and explicit values (None means "not given").

    Raises `LLMError` with the offending key for a bad value, so a typo in a timeout is
    one clear line and not a silent fallback.
    """
    env = dict(os.environ if environ is None else environ)
    named = config_file or (
        Path(env["WHYREC_LLM_CONFIG"]) if env.get("WHYREC_LLM_CONFIG") else None
    )
    merged = _from_file(named or DEFAULT_FILE, required=named is not None)
    merged.update(_from_env(env))
    merged.update({k: v for k, v in explicit.items() if v is not None})
    try:
        return LLMConfig(**merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise LLMError(f"LLM setting {where}: {first['msg']}") from None
