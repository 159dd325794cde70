"""Brand settings, read from `templates/<brand>/brand.toml`: a new brand is a new folder."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

from cronsim import CronSim, CronSimError
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
)

# The repository's templates folder; ROLLOUT_TEMPLATES points elsewhere (e.g. an installed copy).
DEFAULT_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


class BrandError(ValueError):
    """A brand folder is missing or its brand.toml is incomplete."""


@dataclass(frozen=True)
class ExportHints:
    """What a brand's CRM export is known to look like; `None` means detect it."""

    delimiter: str | None = None
    encoding: str | None = None
    # canonical column name -> header used by this brand's CRM, beyond the built-in aliases
    columns: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Brand:
    slug: str
    display_name: str
    mandatory_date: date
    sender_name: str
    sender_address: str
    website: str
    pin_locations: tuple[str, ...]
    pin_menu: str
    daily_quota: int
    schedule: str | None
    export: ExportHints
    folder: Path

    @property
    def sender_domain(self) -> str:
        return self.sender_address.rpartition("@")[2]


def templates_root() -> Path:
    return Path(os.environ.get("ROLLOUT_TEMPLATES", DEFAULT_TEMPLATES))


def brand_slugs(root: Path | None = None) -> list[str]:
    """Every folder under the templates root that has a brand.toml, sorted."""
    root = root or templates_root()
    return sorted(p.parent.name for p in root.glob("*/brand.toml"))


def _iso_date(value: object) -> object:
    """TOML dates come as `date`; a quoted "YYYY-MM-DD" is accepted too, nothing else."""
    if isinstance(value, datetime):
        raise ValueError("a date (YYYY-MM-DD) without a time")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not a date (YYYY-MM-DD): {value!r}") from None
    raise ValueError(f"not a date (YYYY-MM-DD): {value!r}")


def _cron(value: str | None) -> str | None:
    if not value:
        return None
    try:
        CronSim(value, datetime(2000, 1, 1))
    except CronSimError as error:
        raise ValueError(f"not a cron expression ({error}): {value!r}") from None
    return value


class ExportConfig(BaseModel):
    """`[export]` in brand.toml."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    delimiter: StrictStr | None = None
    encoding: StrictStr | None = None
    columns: dict[StrictStr, StrictStr] = Field(default_factory=dict)


class BrandConfig(BaseModel):
    """What brand.toml must hold; validated before any work starts. Keys it does not know are
    left for other readers of the file (they are not errors)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    display_name: StrictStr = Field(min_length=1)
    mandatory_date: Annotated[date, BeforeValidator(_iso_date)]
    sender_name: StrictStr = Field(min_length=1)
    sender_address: StrictStr = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    website: StrictStr
    # A list, even of one: a bare string is refused rather than split into characters.
    pin_locations: list[StrictStr] = Field(min_length=1)
    pin_menu: StrictStr
    daily_quota: StrictInt = Field(default=0, ge=0)
    schedule: Annotated[StrictStr | None, AfterValidator(_cron)] = None
    export: ExportConfig = Field(default_factory=ExportConfig)


def _first_problem(path: Path, error: ValidationError) -> str:
    """One line: the file, the setting and what is wrong with it."""
    problem = error.errors()[0]
    where = ".".join(str(part) for part in problem["loc"] if not isinstance(part, int))
    if problem["type"] == "missing":
        return f"{path}: missing setting {where!r}"
    message = str(problem["msg"]).removeprefix("Value error, ")
    return f"{path}: setting {where!r}: {message} (got {problem['input']!r})"


def load_brand(slug: str, root: Path | None = None) -> Brand:
    root = root or templates_root()
    path = root / slug / "brand.toml"
    if not path.is_file():
        known = ", ".join(brand_slugs(root)) or "none"
        raise BrandError(f"unknown brand {slug!r}: no {path} (known brands: {known})")
    try:
        with path.open("rb") as f:
            config = BrandConfig.model_validate(tomllib.load(f))
    except tomllib.TOMLDecodeError as error:
        raise BrandError(f"{path}: not valid TOML: {error}") from None
    except ValidationError as error:
        raise BrandError(_first_problem(path, error)) from None
    return Brand(
        slug=slug,
        display_name=config.display_name,
        mandatory_date=config.mandatory_date,
        sender_name=config.sender_name,
        sender_address=config.sender_address,
        website=config.website,
        pin_locations=tuple(config.pin_locations),
        pin_menu=config.pin_menu,
        daily_quota=config.daily_quota,
        schedule=config.schedule,
        export=ExportHints(
            delimiter=config.export.delimiter,
            encoding=config.export.encoding,
            columns=dict(config.export.columns),
        ),
        folder=path.parent,
    )


def load_brands(slugs: list[str] | None = None, root: Path | None = None) -> list[Brand]:
    """The named brands, or every brand when `slugs` is empty."""
    return [load_brand(s, root) for s in (slugs or brand_slugs(root))]
