"""Server settings: command-line flags override `CONVERSATIONS_*` environment variables."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def default_db_path() -> Path:
    """The database under the user's data directory (XDG on Linux)."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("mcp-server-conversations", appauthor=False)) / "conversations.db"


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LOG_LEVELS: tuple[LogLevel, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DATABASE_URL_SCHEMES = ("postgresql://", "postgres://")
MODEL_HANDLE = re.compile(r"^[A-Za-z0-9_.\-]+/\S+$")  # litellm's provider/model-name


def is_database_url(location: object) -> bool:
    """Whether `--db` names a PostgreSQL server rather than a SQLite file."""
    return isinstance(location, str) and location.startswith(DATABASE_URL_SCHEMES)


def redacted(location: object) -> str:
    """A database location fit for logs: a URL's password replaced by ***."""
    text = str(location)
    if not is_database_url(text):
        return text
    scheme, rest = text.split("://", 1)
    auth, at, host = rest.rpartition("@")
    if at and ":" in auth:
        auth = auth.split(":", 1)[0] + ":***"
    return f"{scheme}://{auth}{at}{host}"


class Settings(BaseSettings):
    """Everything the server can be told. Each field maps to `CONVERSATIONS_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="CONVERSATIONS_", extra="ignore")

    db: Path | str = Field(default_factory=default_db_path, description="SQLite database file, or a postgresql:// URL")
    default_model: str | None = Field(default=None, description="Model handle used when no other level sets one")
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Extra model handles to list at GET /v1/models/ (comma-separated)"
    )
    max_message_chars: int = Field(default=200_000, ge=1, description="Largest accepted message text")
    default_context_window: int = Field(
        default=32_000, ge=1000, description="Context window for models whose size litellm does not know"
    )
    model_timeout: float = Field(default=600.0, gt=0, description="Idle-read timeout of model calls, seconds")
    model_retries: int = Field(default=0, ge=0, le=10, description="Retries litellm makes on a failed call")
    embedding_model: str | None = Field(default=None, description="Optional embedding model for hybrid search")
    rerank_model: str | None = Field(
        default=None, description="Optional reranker (a litellm rerank handle) reordering search's candidates"
    )
    # A search's worst added wait. A hosted reranker or a cross-encoder on a GPU answers a search's
    # candidates well within it; one on a CPU may need more, and is given it with this setting
    # (docs/runs.md). Past it the search answers un-reranked rather than keep the caller waiting.
    rerank_timeout: float = Field(
        default=2.0,
        gt=0,
        le=60,
        allow_inf_nan=False,
        description="Seconds a search waits for the reranker before answering in its un-reranked order",
    )
    memory_history_limit: int = Field(
        default=1000, ge=1, le=1_000_000, description="Versions of each memory block kept (oldest pruned first)"
    )
    run_sweep_interval: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        description="Seconds between looks for runs of server processes that died (they end interrupted)",
    )
    max_runs_per_principal: int = Field(
        default=8, ge=1, le=10_000, description="Runs executing at once per principal (more wait queued, in order)"
    )
    # HTTP transport
    transport: Literal["stdio", "streamable-http"] = Field(default="stdio", description="stdio or streamable-http")
    host: str = "127.0.0.1"
    port: int = Field(default=8283, ge=0, le=65535)
    stateless: bool = False
    json_response: bool = False
    auth_token: str | None = None
    auth_token_file: Path | None = Field(default=None, description="File holding the bearer token (kept out of ps)")
    allow_unauthenticated: bool = False
    # OAuth 2.1 resource server: JWT access tokens of this issuer (the server never issues tokens)
    oauth_issuer: str | None = Field(default=None, description="Authorization server whose JWTs are accepted")
    public_url: str | None = Field(default=None, description="The URL clients reach this server at")
    oauth_audience: str | None = Field(default=None, description="Accepted aud claim (default: public_url)")
    oauth_required_scopes: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Scopes every access token must carry (comma-separated)"
    )
    allowed_hosts: list[str] = Field(default_factory=list)
    allowed_origins: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1, description="Larger HTTP bodies get 413")
    session_idle_timeout: float = Field(default=1800.0, gt=0, allow_inf_nan=False, description="Seconds")
    max_sessions: int = Field(default=1000, ge=1, description="Open MCP sessions at most (503 beyond)")
    request_timeout: float = Field(
        default=30.0, gt=0, allow_inf_nan=False, description="Seconds for a request's headers, and its body, to arrive"
    )
    # At most 10000: the shared counter keeps one time per request accepted in the window.
    rate_limit: int | None = Field(
        default=None, ge=1, le=10_000, description="HTTP requests per principal in any 60 s (429 beyond)"
    )
    log_level: LogLevel = "WARNING"
    # At DEBUG, third-party loggers (sse_starlette, httpx, ...) log whole messages and
    # SQL parameters; they stay at INFO unless this is set.
    debug_all: bool = False

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, value: object) -> object:
        """`a,b` or `a b` from the environment; a list from the command line."""
        if isinstance(value, str):
            value = value.replace(",", " ").split()
        if isinstance(value, list):
            value = [h for v in value for h in str(v).replace(",", " ").split()]
            bad = [h for h in value if "/" not in h.strip("/")]
            if bad:
                raise ValueError(f"models must be provider/model-name handles (got {', '.join(bad)})")
        return value

    @field_validator("oauth_required_scopes", mode="before")
    @classmethod
    def _scopes(cls, value: object) -> object:
        """`a,b` or `a b`, from the environment or the command line."""
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            value = [s for v in value for s in str(v).replace(",", " ").split()]
        return value

    @field_validator("oauth_issuer", "public_url", "oauth_audience", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _oauth(self) -> Settings:
        """OAuth needs to know the server's own URL: it is the audience and where clients find metadata."""
        for name in ("oauth_issuer", "public_url"):
            value = getattr(self, name)
            if value is not None:
                from .http.oauth import url_problem  # only when configured: stdio never loads it

                if problem := url_problem(value, name):
                    raise ValueError(problem)
        if self.oauth_issuer and not self.public_url:
            raise ValueError(
                "oauth_issuer requires public_url (--public-url): the URL clients reach this server at, "
                "e.g. https://conversations.example.com; it is the tokens' audience and where clients "
                "find the protected resource metadata"
            )
        if (self.oauth_audience or self.oauth_required_scopes) and not self.oauth_issuer:
            raise ValueError("oauth_audience and oauth_required_scopes need oauth_issuer (--oauth-issuer)")
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: object) -> object:
        """Any case on the command line; the MCP SDK and logging want upper case."""
        level = str(value).strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)} (got {value!r})")
        return level

    @field_validator("embedding_model")
    @classmethod
    def _embedding_model(cls, value: str | None) -> str | None:
        """A `local/` model must be known and installed: say so at start, not in the indexer's log."""
        from .local.models import check, is_local

        if value and is_local(value):
            check(value)
        return value

    @field_validator("rerank_model", mode="before")
    @classmethod
    def _rerank_model(cls, value: object) -> object:
        """A litellm handle, said wrong at start rather than in a warning on every search."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        handle = str(value).strip()
        if not MODEL_HANDLE.match(handle) or handle.endswith("/"):
            raise ValueError(
                f"rerank_model {handle!r} is not a model handle; use provider/model-name, e.g. cohere/rerank-v3.5, "
                "hosted_vllm/BAAI/bge-reranker-v2-m3 or infinity/mixedbread-ai/mxbai-rerank-xsmall-v1"
            )
        if handle.split("/", 1)[0] in ("openai", "ollama"):  # the usual routes to a self-hosted model
            raise ValueError(
                f"rerank_model {handle!r}: litellm has no rerank route for {handle.split('/', 1)[0]}/; for a server "
                "with a Cohere-compatible /rerank endpoint (vLLM, Infinity) use hosted_vllm/<model> or infinity/<model>"
            )
        if handle.startswith("local/"):
            raise ValueError(
                f"rerank_model {handle!r}: no reranker runs in this process (no package ships a cross-encoder's "
                "weights); serve one with vLLM or Infinity and name it hosted_vllm/<model> or infinity/<model>"
            )
        return handle

    @field_validator("db", mode="before")
    @classmethod
    def _db(cls, value: object) -> object:
        """A postgresql:// URL stays the string it is (a Path would fold its '//'); anything else is a path."""
        return value if is_database_url(value) else Path(str(value))

    @model_validator(mode="after")
    def _token_file(self) -> Settings:
        """Read --auth-token-file once, at start: a missing or empty file is a configuration error."""
        if self.auth_token_file is None:
            return self
        if (self.auth_token or "").strip():
            raise ValueError("give either auth_token or auth_token_file, not both")
        path = Path(os.path.expanduser(str(self.auth_token_file)))
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"auth_token_file {str(path)!r} cannot be read: {e}") from None
        if not token:
            raise ValueError(f"auth_token_file {str(path)!r} is empty")
        self.auth_token = token
        return self

    def resolved_db(self) -> Path | str:
        """The SQLite file (user's ~ expanded) or the PostgreSQL URL, as given."""
        if is_database_url(self.db):
            return str(self.db)
        return Path(os.path.expanduser(str(self.db)))
