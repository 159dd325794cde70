"""The run's settings: flag, then `ROLLOUT_*` variable, then default.

Validated before any work starts: a bad value is one line naming the flag or variable
(`SettingsError`), not a traceback halfway through a run. `Settings` is also the one parameter
the flows take (`settings`, one JSON object in the Prefect UI and in a deployment), so it holds
nothing secret or personal: the SMTP password, peppers and keys are read from the environment
where they are used, and a transport URL with credentials is refused.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from rollout.transports import Transport, open_transport

PREFIX = "ROLLOUT_"
# The settings an environment variable may give (ROLLOUT_EXPORTS, ROLLOUT_TRANSPORT,
# ROLLOUT_STATE_URL); the rest come from flags or deployment parameters only: no hidden
# ROLLOUT_AFTER_DEADLINE.
FROM_ENVIRONMENT = frozenset({"exports", "transport", "state_url"})
DEFAULT_TRANSPORT = "maildir:{state_dir}/outbox"


class SettingsError(ValueError):
    """A setting (flag or environment variable) has a value the run cannot use."""


class _SomeFromEnvironment(EnvSettingsSource):
    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in super().__call__().items() if k in FROM_ENVIRONMENT}


class Settings(BaseSettings):
    """What a run does. A deployment's `settings` parameter is validated into this too, so an
    unknown key there is an error, and the environment fills what it leaves out."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_ignore_empty=True, extra="forbid", frozen=True
    )

    brands: list[str] | None = None  # None: every brand
    # Folder with one <brand>.csv per brand; no default: a real run names its exports.
    exports: Path | None = None
    state_dir: Path = Path(".rollout")
    # sqlite:///PATH or postgresql://[USER@]HOST[:PORT]/DB, never with a password;
    # None: the SQLite file in the state dir
    state_url: str | None = None
    # maildir:PATH or smtp[s|+starttls]://host:port; None: a Maildir in the state dir
    transport: str | None = None
    connections: int = Field(default=4, ge=1)
    rate: float | None = Field(default=None, gt=0)  # mails per second; None: no cap
    limit: int | None = Field(default=None, ge=0)  # per brand; None: brand.toml daily_quota
    after_deadline: bool = False
    include_unknown: bool = False  # resend: also those whose outcome is unknown
    today: date | None = None  # None: the real date
    dask_address: str | None = None  # None: hash on local threads
    chunk_size: int = Field(default=5_000, ge=1)
    unpeppered: bool = False

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _SomeFromEnvironment(settings_cls)

    def require_exports(self) -> Path:
        if self.exports is None:
            raise SettingsError(
                "no exports folder: give --exports DIR or set ROLLOUT_EXPORTS "
                "(the folder with one <brand>.csv per brand)"
            )
        if not self.exports.is_dir():
            raise SettingsError(f"exports folder {self.exports} does not exist or is no folder")
        return self.exports

    @property
    def state_db(self) -> str:
        """The state DB's URL: `state_url`, else the SQLite file in the state dir."""
        from rollout.state.connect import state_url  # SQLAlchemy: only where a DB is opened

        return state_url(self.state_dir, self.state_url)

    def chosen_transport(self) -> Transport:
        """The transport, else a Maildir in the state dir (no server needed), parsed and
        checked (TransportConfigError in one line, any password redacted)."""
        chosen = self.transport or DEFAULT_TRANSPORT
        # not format(): other braces are refused by open_transport
        return open_transport(chosen.replace("{state_dir}", str(self.state_dir)))


def load_settings(**flags: object) -> Settings:
    """Flags given (not None) win over the environment; raise SettingsError in one line."""
    given = {name: value for name, value in flags.items() if value is not None}
    try:
        settings = Settings(**given)  # type: ignore[arg-type]
    except ValidationError as error:
        raise SettingsError(_one_line(error, given)) from None
    argon2_cost(os.environ)  # checked with the rest, before any work
    settings.chosen_transport()  # a URL with a password never becomes a flow parameter
    if settings.state_url is not None:
        _check_state_url(settings.state_url, "state_url" in given)
    return settings


def _check_state_url(url: str, from_flag: bool) -> None:
    """A state URL with a password never becomes a flow parameter either (said without it)."""
    from rollout.state.connect import StateUrlError, parse

    try:
        parse(url)
    except StateUrlError as error:
        source = "--state-url" if from_flag else f"{PREFIX}STATE_URL"
        raise SettingsError(
            f"{source}: {str(error).removeprefix('state URL').lstrip(': ')}"
        ) from None


class Argon2Cost(BaseModel):
    """argon2id cost from `ROLLOUT_ARGON2_*` (OWASP's minimum by default); the bounds are
    argon2's own. The pins package adds OWASP's floor."""

    model_config = ConfigDict(frozen=True)
    time_cost: int = Field(default=2, ge=1)
    memory_kib: int = Field(default=19_456, ge=8, lt=2**32)
    parallelism: int = Field(default=1, ge=1, lt=2**24)


def argon2_cost(env: Mapping[str, str]) -> Argon2Cost:
    """The cost the environment asks for; SettingsError (one line, naming the variable)."""
    given = {
        name: value.strip()
        for name in Argon2Cost.model_fields
        if (value := env.get(f"{PREFIX}ARGON2_{name.upper()}", "")).strip()
    }
    try:
        cost = Argon2Cost(**given)  # type: ignore[arg-type]
    except ValidationError as error:
        raise SettingsError(_one_line(error, {}, f"{PREFIX}ARGON2_")) from None
    if cost.memory_kib < 8 * cost.parallelism:
        raise SettingsError(
            f"{PREFIX}ARGON2_MEMORY_KIB must be at least 8 × {PREFIX}ARGON2_PARALLELISM "
            f"({8 * cost.parallelism}), got {cost.memory_kib}"
        )
    return cost


def _one_line(error: ValidationError, flags: Mapping[str, object], prefix: str = PREFIX) -> str:
    problem = error.errors()[0]
    name = str(problem["loc"][0]) if problem["loc"] else "setting"
    source = f"--{name.replace('_', '-')}" if name in flags else f"{prefix}{name.upper()}"
    message = str(problem["msg"]).removeprefix("Value error, ")
    return f"{source}: {message}, got {problem['input']!r}"
