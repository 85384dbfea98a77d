"""The product's documentation covers what the code reads, and the repository stands on its own."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_DOC = ROOT / "docs" / "settings.md"
ENV_NAME = re.compile(r"\bEDT_[A-Z][A-Z0-9_]*[A-Z0-9]\b")


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    return [ROOT / line for line in out.splitlines() if (ROOT / line).is_file()]


def documented() -> set[str]:
    return set(ENV_NAME.findall(SETTINGS_DOC.read_text()))


def test_every_setting_field_is_documented() -> None:
    names = {f"EDT_{field.upper()}" for field in Settings.model_fields}
    assert sorted(names - documented()) == []


def test_every_environment_variable_the_code_reads_is_documented() -> None:
    sources = [p for p in tracked_files() if p.suffix in (".py", ".yml", ".yaml") or p.name in ("Makefile", "run")]
    used: dict[str, str] = {}
    for path in sources:
        if "tests/unit" in path.as_posix() or "migrations" in path.as_posix():
            continue
        for name in ENV_NAME.findall(path.read_text(errors="replace")):
            used.setdefault(name, str(path.relative_to(ROOT)))
    missing = {name: where for name, where in used.items() if name not in documented()}
    assert missing == {}


def test_nothing_in_the_repository_points_outside_it() -> None:
    """The team's working folder beside the repository is not part of the product."""
    folder = "sha" + "red"  # spelt apart so that this file does not match itself
    pattern = re.compile(rf"\.\./{folder}\b|/work/{folder}\b")
    offenders = [str(p.relative_to(ROOT)) for p in tracked_files()
                 if p.suffix not in (".png", ".zip", ".gz") and pattern.search(p.read_text(errors="replace"))]
    assert offenders == []


def test_the_readme_links_only_documents_that_exist() -> None:
    links = re.findall(r"\]\(((?:docs/)[^)#]+)", (ROOT / "README.md").read_text())
    assert links, "the README should point to docs/"
    assert [link for link in links if not (ROOT / link).exists()] == []
