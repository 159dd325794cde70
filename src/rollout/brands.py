"""Brand settings, read from `templates/<brand>/brand.toml`: a new brand is a new folder."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib.resources import files
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

from rollout.pins import POLICIES, PinPolicy

# The top-level templates/ folder, installed as the package `rollout_templates` (see setup.py):
# the repository's folder in an editable install, the wheel's copy otherwise. ROLLOUT_TEMPLATES
# points elsewhere.
TEMPLATES_PACKAGE = "rollout_templates"


class BrandError(ValueError):
    """A brand folder is missing or its brand.toml is incomplete."""


@dataclass(frozen=True)
class ExportHints:
    """What a brand's CRM export is known to look like; `None` means detect it."""

    delimiter: str | None = None
    encoding: str | None = None
    # canonical column name -> header used by this brand's CRM, beyond the built-in aliases
    columns: dict[str, str] = field(default_factory=dict)
    # write-back column of the sealed PIN; None: Legi-PIN-Sealed or legi_pin_sealed, like the rest
    sealed_column: str | None = None


@dataclass(frozen=True)
class SecretNames:
    """Names of the environment variables holding a brand's pepper and seal key (not values)."""

    pepper: str
    pepper_id: str
    seal_key: str
    seal_key_id: str

    @classmethod
    def default(cls, slug: str) -> SecretNames:
        """<BRAND>_PIN_PEPPER, ..._ID, <BRAND>_PIN_SEAL_KEY, ..._ID; <BRAND>: CONGSTAR, JAMOBIL."""
        prefix = re.sub(r"[^A-Z0-9]", "", slug.upper())
        return cls(
            f"{prefix}_PIN_PEPPER",
            f"{prefix}_PIN_PEPPER_ID",
            f"{prefix}_PIN_SEAL_KEY",
            f"{prefix}_PIN_SEAL_KEY_ID",
        )


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
    secrets: SecretNames | None = None  # None: SecretNames.default(slug)
    # The rules a customer-chosen PIN is judged by (the brand's published ones: "floor");
    # generated PINs always follow the stricter STRICT. The e-mail lists exactly these rules.
    customer_pin_policy: str = "floor"
    # How the e-mail looks: brand colour, wordmark, imprint lines for the footer.
    colour: str = "#1a1a1a"
    wordmark: str = ""
    imprint: tuple[str, ...] = ()

    @property
    def customer_policy(self) -> PinPolicy:
        """The check of a customer-chosen PIN: `check_pin(pin, born, brand.customer_policy)`."""
        return POLICIES[self.customer_pin_policy]

    @property
    def secret_names(self) -> SecretNames:
        return self.secrets or SecretNames.default(self.slug)

    @property
    def sender_domain(self) -> str:
        return self.sender_address.rpartition("@")[2]


def campaign_id(brand: Brand) -> str:
    """Stable per brand and mandatory date: Message-IDs and delivery records hang off it."""
    return f"legi-pin-{brand.slug}-{brand.mandatory_date:%Y%m%d}"


def templates_root() -> Path:
    """$ROLLOUT_TEMPLATES if set, else the installed `rollout_templates` package's folder."""
    override = os.environ.get("ROLLOUT_TEMPLATES")
    return Path(override) if override else default_templates()


def default_templates() -> Path:
    """The templates shipped with the package (a folder on disk: wheels install unzipped)."""
    root = files(TEMPLATES_PACKAGE)
    if not isinstance(root, Path):
        raise BrandError(f"the templates of {TEMPLATES_PACKAGE} are not a folder on disk: {root}")
    return root


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


def _colour(value: str) -> str:
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", value):
        raise ValueError("must be #RRGGBB")
    return value


def _policy_name(value: str) -> str:
    if value not in POLICIES:
        raise ValueError(f"must be one of {', '.join(POLICIES)}")
    return value


class ExportConfig(BaseModel):
    """`[export]` in brand.toml."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    delimiter: StrictStr | None = None
    encoding: StrictStr | None = None
    columns: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    # write-back column of the sealed PIN; unset: Legi-PIN-Sealed or legi_pin_sealed
    sealed_column: StrictStr | None = None


class SecretsConfig(BaseModel):
    """`[secrets]` in brand.toml: other names for the environment variables (never values)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    pepper: StrictStr | None = None
    pepper_id: StrictStr | None = None
    seal_key: StrictStr | None = None
    seal_key_id: StrictStr | None = None


class BrandConfig(BaseModel):
    """What brand.toml must hold; validated before any work starts. A key it does not know is
    an error (a misspelled `shedule` must not fall back to the default silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
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
    secrets: SecretsConfig = Field(default_factory=SecretsConfig)
    # The rules a customer-chosen PIN is judged by; the e-mail lists exactly these.
    customer_pin_policy: Annotated[StrictStr, AfterValidator(_policy_name)] = "floor"
    # How the e-mail looks: brand colour, wordmark, imprint lines for the footer.
    colour: Annotated[StrictStr, AfterValidator(_colour)] = "#1a1a1a"
    wordmark: StrictStr | None = None
    imprint: list[StrictStr] = Field(default_factory=list)


def _first_problem(path: Path, error: ValidationError) -> str:
    """One line: the file, the setting and what is wrong with it."""
    problem = error.errors()[0]
    where = ".".join(str(part) for part in problem["loc"] if not isinstance(part, int))
    if problem["type"] == "missing":
        return f"{path}: missing setting {where!r}"
    if problem["type"] == "extra_forbidden":
        return f"{path}: unknown setting {where!r} (misspelled?)"
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
            sealed_column=config.export.sealed_column or None,
        ),
        folder=path.parent,
        secrets=_secret_names(slug, config.secrets.model_dump(exclude_none=True)),
        customer_pin_policy=config.customer_pin_policy,
        colour=config.colour,
        wordmark=config.wordmark or config.display_name,
        imprint=tuple(config.imprint),
    )


def load_brands(slugs: list[str] | None = None, root: Path | None = None) -> list[Brand]:
    """The named brands, or every brand when `slugs` is empty."""
    return [load_brand(s, root) for s in (slugs or brand_slugs(root))]


def _secret_names(slug: str, raw: dict[str, str]) -> SecretNames:
    """[secrets] in brand.toml may rename any of the variables; the rest keep their default."""
    default = SecretNames.default(slug)
    names = {k: raw.get(k, getattr(default, k)) for k in default.__dataclass_fields__}
    return SecretNames(**names)
