"""Dry run: render a brand's e-mails for review, send nothing, change no state."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from prefect import flow

from rollout.brands import load_brands
from rollout.exports import export_path, open_export
from rollout.messages import Composer
from rollout.notify import campaign_id, preview_audience
from rollout.preview import write_preview
from rollout.settings import exports_folder
from rollout.state import StateStore


@flow(name="legi-pin-preview", persist_result=False)
def preview_flow(
    brands: list[str] | None = None,
    exports_dir: str | None = None,
    state_dir: str = ".rollout",
    out_dir: str = "preview",
    limit: int | None = None,
) -> list[str]:
    """One folder per brand with an .eml per customer and an index.html; returns the counts."""
    exports = Path(exports_folder(exports_dir))
    lines = []
    store = StateStore.existing(Path(state_dir))
    try:
        for b in load_brands(brands):
            composer = Composer(b, campaign_id(b))
            composer.validate()
            export = open_export(export_path(exports, b), b)
            audience = preview_audience(export, b, store, limit)
            summary = write_preview(
                Path(out_dir) / b.slug, b, composer, audience.recipients, audience.unreachable
            )
            reasons = Counter(reason for _, reason in audience.unreachable)
            lines.append(
                f"{b.slug}: {summary.written} e-mails would be sent "
                f"({audience.already_mailed} already mailed); unreachable: "
                + (", ".join(f"{r} {n}" for r, n in sorted(reasons.items())) or "none")
                + f"; open {summary.index_path}"
            )
    finally:
        if store:
            store.close()
    return lines
