"""One typed settings object, read from `DMFLOW_*` environment variables or `.env`."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from dmflow.redaction import remember_connection_secrets, remember_secret


def trusted_env_file(path: Path) -> bool:
    """Whether `path` (a .env) may be read: missing, or owned by this user (or root) and
    writable by nobody else. An untrusted one is ignored with a warning."""
    try:
        found = path.stat()
    except OSError:
        return False
    if found.st_uid in (os.geteuid(), 0) and not found.st_mode & 0o022:
        return True
    warnings.warn(
        f"ignoring {path.absolute()}: it belongs to uid {found.st_uid} or others can write "
        "it, and it would choose dmflow's database, binaries and endpoints; make it yours "
        "(chown, chmod go-w) or set DMFLOW_* in the environment",
        stacklevel=2,
    )
    return False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DMFLOW_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: SecretStr | None = None
    """Postgres connection string: a local server, Supabase's direct connection
    or its transaction pooler (port 6543). Unset: an embedded local PostgreSQL."""
    supabase_url: str | None = None
    """Supabase project URL; with `supabase_key` and no `database_url`, the
    store talks to Supabase's REST API."""
    supabase_key: SecretStr | None = None
    """Supabase service-role key (never the anon key: dmflow writes)."""
    data_dir: Path = Field(default_factory=lambda: Path(".dmflow"))
    """Where the embedded PostgreSQL, sample datasets and local models live."""
    postgres_bin_dir: Path | None = None
    """Directory of `initdb`/`pg_ctl` for the embedded database; found on PATH
    or in /usr/lib/postgresql when unset."""
    db_pool_max_size: int = Field(default=4, ge=1, le=64)
    db_connect_timeout_s: float = Field(default=10.0, gt=0)
    db_outage_wait_s: float = Field(default=30.0, gt=0)
    """How long generation waits for a database that does not answer before its phase
    stops; meanwhile nothing more is asked of the LLM."""

    activeloop_token: SecretStr | None = None
    """Token for `hub://` datasets and Activeloop Deep Memory."""
    activeloop_endpoint: str | None = None
    """Activeloop's API base URL (unset: https://app.activeloop.ai)."""
    activeloop_request_deadline_s: float = Field(default=60.0, gt=0)
    """Hard limit on one Activeloop call: its client retries connection errors forever."""
    activeloop_submit_deadline_s: float = Field(default=1800.0, gt=0)
    """Hard limit on writing the queries dataset and starting a Deep Memory job."""

    embedding_base_url: str | None = None
    """OpenAI-compatible embeddings endpoint for `openai:<model>` (unset: the LLM's)."""
    embedding_api_key: SecretStr | None = None
    """Key for the embeddings endpoint (unset: DMFLOW_LLM_API_KEY)."""

    llm_base_url: str | None = None
    """OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp server...); unset: OpenAI."""
    llm_model: str = "gpt-4o-mini"
    llm_api_key: SecretStr | None = None
    llm_concurrency: int = Field(default=8, ge=1, le=512)
    """Requests in flight at once."""
    llm_requests_per_minute: float | None = Field(default=None, gt=0)
    llm_tokens_per_minute: float | None = Field(default=None, gt=0)
    llm_timeout_s: float = Field(default=60.0, gt=0)
    llm_max_attempts: int = Field(default=5, ge=1, le=20)
    """Tries of a chunk whose requests fail for transport reasons (5xx, 429, timeouts)."""
    llm_content_attempts: int = Field(default=3, ge=1, le=20)
    """Replies a chunk may get before it is skipped as unusable: a model that did not
    follow the prompt twice rarely does on the fifth try (plus one a further question
    with `prompt=one_question`)."""
    llm_outage_wait_s: float = Field(default=300.0, gt=0)
    """How long an LLM endpoint that fails every request (an outage, a restart) may hold a
    run before its phase fails; it resumes with `dmflow recover`. An endpoint that has not
    answered once since the phase started gets at most 30 s."""
    llm_cost_per_1k_prompt_tokens: float = Field(default=0.0, ge=0)
    llm_cost_per_1k_completion_tokens: float = Field(default=0.0, ge=0)

    stale_after_s: float = Field(default=600.0, ge=5)
    """A generating/training run whose heartbeat is older than this is dead (SIGKILL, OOM,
    a lost machine), whatever Prefect says. On the driver's own host a driver that is gone
    is known at once. The heartbeat beats every min(20 s, this / 4)."""
    recovery_attempt_budget: int = Field(default=3, ge=0)
    """How many times the sweep recovers one run before leaving it for a person."""
    recovery_backoff_s: float = Field(default=300.0, ge=0)
    """The sweep waits backoff x 2^(attempt) after a run's failure before recovering it."""

    generation_batches_in_flight: int = Field(default=2, ge=1, le=64)
    """Batches generated at once. Two keep a slow LLM busy while a batch is recorded;
    more only add to what a crash can lose (the batches in flight are redone). With the
    openai generator, at least enough to fill DMFLOW_LLM_CONCURRENCY plus one batch."""

    @field_validator(
        "database_url",
        "supabase_url",
        "supabase_key",
        "activeloop_token",
        "activeloop_endpoint",
        "embedding_base_url",
        "embedding_api_key",
        "llm_base_url",
        "llm_api_key",
        mode="before",
    )
    @classmethod
    def _empty_means_unset(cls, value: object) -> object:
        # `DMFLOW_DATABASE_URL=` in a shell or .env must not mean "connect to ''".
        return None if isinstance(value, str) and not value.strip() else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # A .env decides which database, binaries and endpoints dmflow trusts with its
        # secrets: it is read only when this user wrote it and nobody else can.
        env_file = Path(str(cls.model_config.get("env_file")))
        dotenv = (dotenv_settings,) if trusted_env_file(env_file) else ()
        return (init_settings, env_settings, *dotenv, file_secret_settings)

    @model_validator(mode="after")
    def _remember_secrets(self) -> Settings:
        # From here on, `scrub` removes each of them by value wherever it appears.
        for value in (
            self.supabase_key,
            self.activeloop_token,
            self.embedding_api_key,
            self.llm_api_key,
            self.database_url,
        ):
            if value is not None:
                remember_secret(value.get_secret_value())
        if self.database_url is not None:
            remember_connection_secrets(self.database_url.get_secret_value())
        return self

    def resolved_data_dir(self) -> Path:
        # Not resolve(): a data directory that is a symbolic link is refused, not followed.
        return self.data_dir.expanduser().absolute()
