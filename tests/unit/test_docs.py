"""The README is the front door and `docs/` the rest: every relative link in them (and in the
changelog) leads to a file that exists, and to a heading there when it names one; every picture in
`docs/` is shown by some page; the README stays short."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MOST_LINES = 200

_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6} +(.+?) *$", re.MULTILINE)


def links(page: Path) -> list[str]:
    """The targets of the page's Markdown links and images, outside code spans."""
    return _LINK.findall(_CODE_SPAN.sub("", page.read_text(encoding="utf-8")))


def anchor(heading: str) -> str:
    """The fragment GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {anchor(heading) for heading in _HEADING.findall(page.read_text(encoding="utf-8"))}


def relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading(page):
    broken = []
    for target in filter(relative, links(page)):
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file}")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            broken.append(f"{target}: no heading #{fragment} in {file.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_every_picture_in_docs_is_shown_by_a_page():
    shown = {(page.parent / target.partition("#")[0]).resolve()
             for page in PAGES for target in filter(relative, links(page))}
    unshown = [picture.name for picture in sorted((ROOT / "docs").glob("*.png")) if picture.resolve() not in shown]
    assert not unshown, f"pictures no page links to: {unshown}"


def test_the_readme_is_short():
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= README_MOST_LINES, f"README.md has {lines} lines, at most {README_MOST_LINES}: move detail to docs/"


def test_a_broken_link_and_a_missing_heading_are_found(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## Two words\n\n[a](missing.md) [b](#two-words) [c](#nowhere) `[d](code.md)`\n"
                    "[e](https://example.org/x)\n")
    assert links(page) == ["missing.md", "#two-words", "#nowhere", "https://example.org/x"]
    assert anchors(page) == {"title", "two-words"}
    assert anchor("Bad input and abuse: `bench/abuse.py`") == "bad-input-and-abuse-benchabusepy"
