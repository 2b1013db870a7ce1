"""Every relative link in the README and docs/ points to a file or folder of this repository, and every
#anchor to a heading of its page."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _prose(page: Path) -> str:
    return re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # code blocks hold no links


def _relative_links(page: Path, *, same_page: bool = False) -> list[str]:
    return [t for t in LINK.findall(_prose(page))
            if not re.match(r"[a-z][a-z0-9+.-]*:", t) and (same_page or not t.startswith("#"))]


@functools.cache
def _anchors(page: Path) -> frozenset[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens; repeats get -1, -2, ..."""
    anchors: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", _prose(page), flags=re.M):
        slug = anchor = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        repeat = 0
        while anchor in anchors:
            repeat += 1
            anchor = f"{slug}-{repeat}"
        anchors.add(anchor)
    return frozenset(anchors)


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page):
    broken = [t for t in _relative_links(page) if not (page.parent / t.split("#")[0]).exists()]
    assert not broken, f"{page.relative_to(ROOT)} links to missing files: {broken}"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / t.split("#")[0]).resolve() for t in _relative_links(ROOT / "README.md")}
    assert [p.name for p in PAGES[1:] if p.resolve() not in linked] == []


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_anchors_name_a_heading(page):
    broken = []
    for target in _relative_links(page, same_page=True):
        path, _, anchor = target.partition("#")
        linked = page if not path else page.parent / path
        if anchor and linked.suffix == ".md" and linked.exists() and anchor not in _anchors(linked):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)} links to headings that do not exist: {broken}"


def test_anchor_slugs_follow_github():
    page = ROOT / "docs" / "report-adherence.md"
    assert "how-adherence-is-measured" in _anchors(page)
    assert "the-autoencoders-ceiling-2026-12-02-2-shared-cpu-cores" in _anchors(page)


def test_the_lab_notebook_contents_list_every_section():
    page = ROOT / "docs" / "adherence-log.md"
    prose = _prose(page)
    contents = prose.split("## Contents", 1)[1].split("\n## ", 1)[0]
    listed = {t[1:] for t in LINK.findall(contents) if t.startswith("#")}
    title = re.sub(r"[^\w\- ]", "", prose.splitlines()[0][2:].lower()).replace(" ", "-")  # the page's own # heading
    sections = _anchors(page) - {title, "contents"}
    assert sections - listed == set(), "sections missing from the notebook's Contents (add them there)"
