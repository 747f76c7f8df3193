"""The README is a user's first page and docs/ holds the rest: every relative link in them
resolves, and every page under docs/ can be reached from the README by following links."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "examples").rglob("README.md"))]


def _relative_links(page: Path) -> list[str]:
    return [link for link in LINK.findall(page.read_text())
            if not re.match(r"[a-z][a-z0-9+.-]*:", link) and not link.startswith("#")]


def test_the_link_finder_finds_links() -> None:
    assert "docs/deploy.md" in _relative_links(ROOT / "README.md")


def test_every_relative_link_resolves() -> None:
    broken = [f"{page.relative_to(ROOT)}: {link}" for page in _pages() for link in _relative_links(page)
              if not (page.parent / link.split("#")[0]).exists()]
    assert broken == []


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    seen, todo = set(), [ROOT / "README.md"]
    while todo:
        page = todo.pop().resolve()
        if page in seen or page.suffix != ".md" or not page.is_file():
            continue
        seen.add(page)
        todo += [page.parent / link.split("#")[0] for link in _relative_links(page)]
    unreached = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md") if p.resolve() not in seen)
    assert unreached == []
