"""Dry run as a Prefect flow (the `preview` deployment): render a brand's e-mails for review,
send nothing, change no state. Without a Prefect server the command calls the core directly."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.artifacts import run_name
from rollout.preview import preview_brands
from rollout.settings import Settings


@flow(name="legi-pin-preview", persist_result=False, flow_run_name=run_name("preview"))
def preview_flow(settings: Settings, out_dir: str = "preview") -> list[str]:
    """One folder per brand with an .eml per customer and an index.html (at most
    `settings.limit` e-mails each); returns the counts."""
    return preview_brands(settings, Path(out_dir))
