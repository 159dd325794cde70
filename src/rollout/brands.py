"""Brand settings, read from `templates/<brand>/brand.toml`: a new brand is a new folder."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date
from importlib.resources import files
from pathlib import Path

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


def load_brand(slug: str, root: Path | None = None) -> Brand:
    root = root or templates_root()
    path = root / slug / "brand.toml"
    if not path.is_file():
        known = ", ".join(brand_slugs(root)) or "none"
        raise BrandError(f"unknown brand {slug!r}: no {path} (known brands: {known})")
    with path.open("rb") as f:
        raw = tomllib.load(f)
    try:
        hints = raw.get("export", {})
        return Brand(
            slug=slug,
            display_name=str(raw["display_name"]),
            mandatory_date=_as_date(raw["mandatory_date"]),
            sender_name=str(raw["sender_name"]),
            sender_address=str(raw["sender_address"]),
            website=str(raw["website"]),
            pin_locations=tuple(str(x) for x in raw["pin_locations"]),
            pin_menu=str(raw["pin_menu"]),
            daily_quota=int(raw.get("daily_quota", 0)),
            schedule=raw.get("schedule") or None,
            export=ExportHints(
                delimiter=hints.get("delimiter"),
                encoding=hints.get("encoding"),
                columns={str(k): str(v) for k, v in hints.get("columns", {}).items()},
                sealed_column=hints.get("sealed_column") or None,
            ),
            folder=path.parent,
            secrets=_secret_names(slug, raw.get("secrets", {})),
            customer_pin_policy=_policy_name(path, raw.get("customer_pin_policy", "floor")),
            colour=_colour(path, raw.get("colour", "#1a1a1a")),
            wordmark=str(raw.get("wordmark", raw["display_name"])),
            imprint=tuple(str(x) for x in raw.get("imprint", ())),
        )
    except KeyError as missing:
        raise BrandError(f"{path}: missing setting {missing}") from None


def load_brands(slugs: list[str] | None = None, root: Path | None = None) -> list[Brand]:
    """The named brands, or every brand when `slugs` is empty."""
    return [load_brand(s, root) for s in (slugs or brand_slugs(root))]


def _as_date(value: object) -> date:
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _secret_names(slug: str, raw: dict[str, object]) -> SecretNames:
    """[secrets] in brand.toml may rename any of the variables; the rest keep their default."""
    default = SecretNames.default(slug)
    names = {k: str(raw.get(k, getattr(default, k))) for k in default.__dataclass_fields__}
    return SecretNames(**names)


def _policy_name(path: Path, value: object) -> str:
    name = str(value)
    if name not in POLICIES:
        raise BrandError(f"{path}: customer_pin_policy must be one of {', '.join(POLICIES)}")
    return name


def _colour(path: Path, value: object) -> str:
    colour = str(value)
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", colour):
        raise BrandError(f"{path}: colour must be #RRGGBB, got {colour!r}")
    return colour
