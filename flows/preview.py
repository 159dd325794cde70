"""Dry run as a Prefect flow (the `preview` deployment): render a brand's e-mails for review,
send nothing, change no state. Without a Prefect server the command calls the core directly."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.artifacts import run_name
from rollout.preview import preview_brands
from rollout.settings import exports_folder


@flow(name="legi-pin-preview", persist_result=False, flow_run_name=run_name("preview"))
def preview_flow(
    brands: list[str] | None = None,
    exports_dir: str | None = None,
    state_dir: str = ".rollout",
    out_dir: str = "preview",
    limit: int | None = None,
) -> list[str]:
    """One folder per brand with an .eml per customer and an index.html; returns the counts."""
    exports = Path(exports_folder(exports_dir))
    return preview_brands(brands, exports, Path(state_dir), Path(out_dir), limit)
