"""The run's settings from the environment: flag, then `ROLLOUT_*` variable, then default.

Validated before any work starts: a bad value is one line naming the variable (`SettingsError`),
not a traceback halfway through a run. Secrets (SMTP password, pepper) are not held here: they
are read where they are used and never become a parameter.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError
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
    transport: str | None = None
    # argon2id cost (OWASP minimum by default); the bounds are argon2's own.
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_memory_kib: int = Field(default=19_456, ge=8, lt=2**32)
    argon2_parallelism: int = Field(default=1, ge=1, lt=2**24)

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
        problem = error.errors()[0]
        name = str(problem["loc"][0]) if problem["loc"] else "setting"
        source = f"--{name.replace('_', '-')}" if name in given else f"{PREFIX}{name.upper()}"
        message = str(problem["msg"]).removeprefix("Value error, ")
        raise SettingsError(f"{source}: {message}, got {problem['input']!r}") from None
    if settings.argon2_memory_kib < 8 * settings.argon2_parallelism:
        raise SettingsError(
            f"{PREFIX}ARGON2_MEMORY_KIB must be at least 8 × {PREFIX}ARGON2_PARALLELISM "
            f"({8 * settings.argon2_parallelism}), got {settings.argon2_memory_kib}"
        )
    return settings


def exports_folder(given: str | None) -> str:
    """The exports folder a flow reads: its parameter, else ROLLOUT_EXPORTS; never a default."""
    return str(load_settings(exports=given).require_exports())
