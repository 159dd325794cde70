"""The run's settings from the environment: flag, then `ROLLOUT_*` variable, then default.

Validated before any work starts: a bad value is one line naming the variable (`SettingsError`),
not a traceback halfway through a run. Secrets (SMTP password, pepper) are not held here: they
are read where they are used and never become a parameter.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

PREFIX = "ROLLOUT_"


class SettingsError(ValueError):
    """A setting (flag or environment variable) has a value the run cannot use."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_ignore_empty=True, extra="ignore", frozen=True
    )

    # Folder with one <brand>.csv per brand; no default: a real run names its exports.
    exports: Path | None = None

    def require_exports(self) -> Path:
        if self.exports is None:
            raise SettingsError(
                "no exports folder: give --exports DIR or set ROLLOUT_EXPORTS "
                "(the folder with one <brand>.csv per brand)"
            )
        if not self.exports.is_dir():
            raise SettingsError(f"exports folder {self.exports} does not exist or is no folder")
        return self.exports


def load_settings(**flags: object) -> Settings:
    """Flags given (not None) win over the environment; raise SettingsError in one line."""
    given = {name: value for name, value in flags.items() if value is not None}
    try:
        settings = Settings(**given)  # type: ignore[arg-type]
    except ValidationError as error:
        raise SettingsError(_one_line(error, given)) from None
    argon2_cost(os.environ)  # checked with the rest, before any work
    return settings


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


def exports_folder(given: str | None) -> str:
    """The exports folder a flow reads: its parameter, else ROLLOUT_EXPORTS; never a default."""
    return str(load_settings(exports=given).require_exports())
