"""The one atomic file writer: the old file or the new one, never half of one."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from rollout.files import atomic_text, remove_stale_temp_files, write_atomically


def test_a_write_replaces_the_file_whole_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    target = tmp_path / "reports" / "congstar.json"  # the folder is made as needed
    write_atomically(target, b"old")
    write_atomically(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["congstar.json"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_a_failure_midway_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "rejects.csv"
    target.write_text("old\n", encoding="utf-8")
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_text(target, "utf-8") as f:
        f.write("half a new fi")
        raise RuntimeError("disk on fire")
    assert target.read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rejects.csv"]


def test_the_mode_is_the_callers_and_line_ends_are_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "writeback.csv"
    with atomic_text(target, "cp1252", mode=0o600) as f:
        f.write("Kundennummer;Straße\r\n")
    assert target.read_bytes() == "Kundennummer;Straße\r\n".encode("cp1252")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_only_the_targets_own_stale_temp_files_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "congstar.csv"
    for name in (".congstar.csv.k1ll3d.tmp", ".jamobil.csv.abc.tmp", "congstar.csv"):
        (tmp_path / name).write_text("x")
    remove_stale_temp_files(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".jamobil.csv.abc.tmp", "congstar.csv"]
