"""The repository carries what it needs: no tracked file points outside it, and every citation of the
project's own docs names a section that exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Built from pieces so that this file does not contain what it looks for.
OUTSIDE = ".." + "/shared"
NOTES = [name + ".md" for name in ("THEORY", "METHODS", "DESIGN", "EXPERIMENTS", "ANCHORS")]
FORBIDDEN = re.compile("|".join(re.escape(s) for s in [OUTSIDE, "shared" + "/data", *NOTES]))
DOCS = ("theory", "metrics", "experiments")
CITATION = re.compile(r"docs/(" + "|".join(DOCS) + r")\.md((?:,? (?:§[\d.]+[a-z]?|and|or|notes?))*)")


def tracked_text_files() -> dict[str, str]:
    """Every file git tracks, as text; binary files (a NUL byte, or not UTF-8) are left out."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    files = {}
    for name in names.decode().split("\0"):
        path = ROOT / name
        if not name or not path.is_file():
            continue
        raw = path.read_bytes()
        if b"\0" in raw:
            continue
        try:
            files[name] = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
    assert "README.md" in files and "src/collapsekit/__init__.py" in files
    return files


def test_no_tracked_file_refers_outside_the_repository() -> None:
    found = [f"{name}:{number}: {line.strip()}"
             for name, text in tracked_text_files().items()
             for number, line in enumerate(text.splitlines(), 1) if FORBIDDEN.search(line)]
    assert not found, "references to files outside the repository:\n" + "\n".join(found)


def headings(doc: str) -> set[str]:
    """Section numbers of a doc: "1.0", "2", "3b", "9.4" from its Markdown headings."""
    text = (ROOT / "docs" / f"{doc}.md").read_text(encoding="utf-8")
    return {m.group(1) for m in re.finditer(r"^#+ (\d+(?:\.\d+)?[a-z]?)[. ]", text, flags=re.MULTILINE)}


def test_every_cited_section_of_the_docs_exists() -> None:
    sections = {doc: headings(doc) for doc in DOCS}
    assert {"1.0", "1.3", "2.6", "3", "4", "5"} <= sections["theory"]
    assert {"0", "1", "2a", "3b", "4", "5", "9.4", "10"} <= sections["metrics"]
    cited, missing = 0, []
    for name, text in tracked_text_files().items():
        for match in CITATION.finditer(text):
            for section in re.findall(r"§([\d.]+[a-z]?)", match.group(2)):
                cited += 1
                if section.rstrip(".") not in sections[match.group(1)]:
                    missing.append(f"{name}: {match.group(0)}")
    assert cited > 50, cited                                 # the code cites the docs throughout
    assert not missing, "citations of sections that do not exist:\n" + "\n".join(missing)


def test_readme_lists_the_bundled_data() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "| `mnist10k` |" in readme and "CC BY-SA 3.0" in readme
