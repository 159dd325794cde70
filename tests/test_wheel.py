"""The wheel is complete: built from the repository, installed with the locked dependencies into a
fresh venv outside it, `rollout preview` renders every brand's e-mails from the packaged templates.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import BRANDS, REPO, SAMPLES

UV = Path(sys.executable).with_name("uv")  # the venv's pinned uv (Makefile); its cache is warm
TEMPLATE_FILES = sorted(
    p.relative_to(REPO / "templates").as_posix()
    for p in (REPO / "templates").rglob("*")
    if p.suffix in {".toml", ".j2"}
)


def uv(*args: str | Path, cwd: Path) -> None:
    done = subprocess.run(
        [str(UV), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sdist from the repository, wheel from the sdist (what a package index would build)."""
    dist = tmp_path_factory.mktemp("dist")
    uv("build", "--quiet", "--out-dir", dist, REPO, cwd=dist)
    (built,) = dist.glob("*.whl")
    return built


@pytest.mark.slow
def test_wheel_holds_every_brand_and_template(wheel: Path) -> None:
    assert {f"{b}/brand.toml" for b in BRANDS} <= set(TEMPLATE_FILES)
    assert "_base/layout.html.j2" in TEMPLATE_FILES
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [f for f in TEMPLATE_FILES if f"rollout_templates/{f}" not in names]
    assert not missing
    assert {"rollout/__init__.py", "flows/cli.py", "rollout_templates/__init__.py"} <= names
    assert not any(n.startswith(("tests/", "tools/", "bench/", "templates/")) for n in names)


@pytest.mark.slow
def test_installed_wheel_previews_every_brand(
    wheel: Path, tmp_path: Path, child_env: dict[str, str]
) -> None:
    venv, work = tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    uv("venv", "--quiet", "--python", sys.executable, venv, cwd=work)
    python = venv / "bin" / "python"
    uv("pip", "sync", "--quiet", "--python", python, REPO / "requirements.lock", cwd=work)
    uv("pip", "install", "--quiet", "--python", python, "--no-deps", wheel, cwd=work)

    env = {k: v for k, v in child_env.items() if k not in {"ROLLOUT_TEMPLATES", "PYTHONPATH"}}
    where = subprocess.run(
        [python, "-c", "import rollout, rollout_templates; print(rollout_templates.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(venv), where  # the wheel's copy, not the repository's

    out = work / "preview"
    command = [venv / "bin" / "rollout", "preview", "--exports", SAMPLES]
    command += ["--state-dir", work / "state", "--out", out, "--limit", "3"]
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    for brand in BRANDS:
        assert (out / brand / "index.html").is_file(), brand
        emails = list((out / brand).glob("*.eml"))
        assert len(emails) == 3, (brand, emails)  # --limit 3; each sample has more
