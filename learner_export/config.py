"""Settings, read from the environment in one place and passed into the app."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_METRICS_TOKEN_CHARS = 24


class Settings(BaseSettings):
    """Every knob of the service. Environment names are `EXPORT_<FIELD>` unless noted."""

    model_config = SettingsConfigDict(env_prefix="EXPORT_", frozen=True)

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "EXPORT_DATABASE_URL")
    )
    read_database_url: str | None = None
    # `db migrate`'s and `db seed`'s: the service's role in this database (learner_export.db.role);
    # None: the one the database recorded at its last migrate, else learner_export_service.
    service_role: str | None = None
    jwt_secret: SecretStr = SecretStr("")
    jwt_audience: str = "authenticated"
    jwt_leeway_seconds: int = Field(default=30, ge=0)
    jwks_file: Path | None = None
    jwks: str | None = None
    # Supabase's signing keys (https://<ref>.supabase.co/auth/v1/.well-known/jwks.json): fetched
    # at start, again when a token names a kid not held (at most once per refetch seconds), and
    # when the keys held are older than max age (a key no longer published stops verifying).
    jwks_url: str | None = None
    jwks_refetch_seconds: float = Field(default=30.0, ge=1)
    jwks_max_age_seconds: float = Field(default=600.0, ge=1)

    pool_max_size: int = Field(default=24, ge=1)
    statement_cache_size: int = Field(default=100, ge=0)
    acquire_timeout_seconds: float = Field(default=2.0, gt=0)

    page_size: int = Field(default=2500, ge=1, le=100_000)
    first_page_size: int = Field(default=1000, ge=1, le=100_000)
    # Connections reading one export, in one snapshot: 2 puts PostgreSQL on two cores.
    connections_per_export: int = Field(default=2, ge=1, le=8)
    # After the first page, read the rest of an export in one statement from the adapter's bulk
    # view, when it offers one (docs/engine.md): false reads every page through the page
    # function.
    bulk_pass: bool = True
    # The bulk pass runs when at least this many rows follow the first page: fewer are read
    # page by page (an index lookup per learner beats aggregating every child table whole).
    bulk_min_rows: int = Field(default=20_000, ge=1)
    # The bulk pass is split into key ranges read at once, one per connection (up to
    # connections_per_export), when each gets at least this many rows: each range aggregates
    # every child table whole, which a small one does not earn back (docs/engine.md).
    bulk_range_min_rows: int = Field(default=100_000, ge=1)
    # Where CSV's, JSON Lines' and XLSX's cells are rendered: "service" (C, from COPY's plain
    # output, when the package was built with its extension) or "database" (the select lists).
    render: Literal["service", "database"] = "service"
    chunk_bytes: int = Field(default=64 * 1024, ge=1024)
    # Bytes of COPY output held per page being read ahead; past it PostgreSQL waits for the
    # client (docs/engine.md).
    read_ahead_bytes: int = Field(default=1024 * 1024, ge=64 * 1024)
    # The largest text cell an export writes, in bytes as stored; a larger one fails the export
    # (before the first byte when it is in the first rows) and the audit row names it.
    max_cell_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    statement_timeout_ms: int = Field(default=60_000, ge=0)
    idle_in_transaction_timeout_ms: int = Field(default=60_000, ge=0)
    stall_timeout_seconds: float = Field(default=60.0, gt=0)
    max_duration_seconds: float = Field(default=3600.0, gt=0)
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    max_limit: int | None = Field(default=None, ge=1)
    role_cache_ttl_seconds: float = Field(default=30.0, ge=0)
    link_secrets: SecretStr = SecretStr("")
    link_ttl_seconds: int = Field(default=300, gt=0)
    link_max_ttl_seconds: int = Field(default=3600, gt=0)
    public_url: str | None = None
    # Exact origins (scheme://host[:port]) whose pages may call the API with fetch(), separated
    # by commas: a str, because pydantic-settings would read a list from the environment as JSON.
    cors_origins: str = ""
    # POST /links bodies are a few hundred bytes; anything past this is refused unread (413).
    link_request_max_bytes: int = Field(default=16 * 1024, ge=1024)
    # Request line plus headers; 1,000 client_id parameters in a query string take ~47 KB.
    max_header_bytes: int = Field(default=64 * 1024, ge=4096)
    # Bearer token for GET /metrics; unset, /metrics answers loopback clients only.
    metrics_token: SecretStr = SecretStr("")
    # Exports at once, for everyone and for one caller: in each process, and across every
    # replica on the same database (advisory locks). One caller's share is a quarter, so that
    # two greedy callers leave half for everyone else (docs/limits.md).
    max_concurrent: int = Field(default=16, ge=1)
    max_concurrent_per_user: int = Field(default=4, ge=1)
    # Connections of the primary's pool that exports' helper connections leave free, for the
    # audit trail, role lookups and /readyz.
    reserved_connections: int = Field(default=4, ge=0)
    # A download that has not been seen reading is cut after this long blocked (its slot and
    # connections come back); one that reads gets stall_timeout_seconds.
    first_stall_seconds: float = Field(default=10.0, gt=0)
    # Refusals, HEAD and limit=0 requests of one caller recorded one row each per minute; past
    # that they are answered as usual and counted into one row per kind (docs/audit.md).
    refusals_per_minute: int = Field(default=10, ge=1)
    # Seconds a client has to send a request's head and body, from its first byte (or from
    # the connection's start); then the connection is closed.
    request_read_timeout_seconds: float = Field(default=10.0, gt=0)
    # Seconds an idle keep-alive connection stays open between requests.
    keep_alive_seconds: float = Field(default=5.0, gt=0)
    # Client connections at once; also held below the process's descriptor limit, with room
    # for the pools. Past it, the oldest connection that has not sent a whole request goes.
    max_connections: int = Field(default=1000, ge=16)
    xlsx_sheet_rows: int = Field(default=1_048_576, ge=2, le=1_048_576)

    # auto: text for a terminal, JSON when piped; json or text forces one.
    log_format: Literal["auto", "json", "text"] = "auto"

    @field_validator("cors_origins")
    @classmethod
    def _exact_origins(cls, value: str) -> str:
        for origin in _split(value):
            parts = urlsplit(origin)
            if (
                parts.scheme not in ("http", "https")
                or not parts.netloc
                or parts.path
                or parts.query
                or parts.fragment
                or "*" in origin
                or origin != origin.lower()
            ):
                raise ValueError(
                    f"EXPORT_CORS_ORIGINS: {origin!r} is not an exact origin such"
                    " as https://admin.example.com (lowercase, no path, no slash)"
                )
        return value

    @field_validator("jwks_url")
    @classmethod
    def _jwks_over_https(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
        if not parts.hostname or not (
            parts.scheme == "https" or (parts.scheme == "http" and loopback)
        ):
            raise ValueError(
                "EXPORT_JWKS_URL must be an https:// URL (plain http only on loopback): "
                "the keys that decide who may export must not be open to tampering"
            )
        return value

    @field_validator("metrics_token")
    @classmethod
    def _long_metrics_token(cls, value: SecretStr) -> SecretStr:
        if 0 < len(value.get_secret_value()) < MIN_METRICS_TOKEN_CHARS:
            raise ValueError(
                f"EXPORT_METRICS_TOKEN must be at least {MIN_METRICS_TOKEN_CHARS}"
                " characters (or unset, to serve /metrics to loopback clients only)"
            )
        return value

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        """The origins of EXPORT_CORS_ORIGINS, in the order given."""
        return tuple(_split(self.cors_origins))


def _split(spec: str) -> list[str]:
    return [item.strip() for item in spec.split(",") if item.strip()]


class ConfigError(ValueError):
    """The configuration cannot work; the message is one line naming the variable(s)."""


def env_name(field: str) -> str:
    """The environment variable that sets a field of Settings."""
    info = Settings.model_fields.get(field)
    if info is None:
        return field.upper()
    alias = info.validation_alias
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    if isinstance(alias, str):
        return alias
    return "EXPORT_" + field.upper()


def _shows_input(field: str) -> bool:
    """Secrets and database URLs (which may hold a password) are never echoed back."""
    info = Settings.model_fields.get(field)
    return not (
        info is None
        or info.annotation is SecretStr
        or "url" in field
        or "secret" in field
        or field == "jwks"
    )


_PROBLEMS = {
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "bool_parsing": "must be true or false",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "literal_error": "must be {expected}",
    "missing": "must be set",
}


def describe_validation_error(exc: ValidationError) -> str:
    """Pydantic's report on Settings as one line: each variable, what it must be, what it was."""
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        template = _PROBLEMS.get(error["type"])
        ctx: dict[str, Any] = error.get("ctx") or {}
        try:
            problem = template.format(**ctx) if template else error["msg"]
        except (KeyError, IndexError):
            problem = error["msg"]
        if _shows_input(field) and isinstance(error.get("input"), str | int | float):
            problem += f" (got {error['input']!r})"
        problems.append(f"{env_name(field)}: {problem}")
    return "; ".join(problems)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (and overrides); ConfigError says what is wrong."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
