"""The experiments' tables in a results page: each between its own pair of HTML comments, so a rerun
replaces its table and leaves the prose around it as the author wrote it."""

from __future__ import annotations

from pathlib import Path


def page_with_section(doc: Path, start: str, end: str, heading: str | None = None) -> str:
    """The text of ``doc`` holding one ``start`` … ``end`` section, or a one-sentence exit.

    A page with neither marker gets the section at its end under ``heading``; with no heading the
    section has a place chosen by hand, so its absence is an error, as is a marker out of place.
    A long experiment calls this before it starts, so a page it cannot fill fails at once.
    """
    text = doc.read_text(encoding="utf-8") if doc.exists() else ""
    if heading is not None and start not in text and end not in text:
        text += f"\n{heading}\n\n{start}\n{end}\n"
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise SystemExit(f"{doc} has no single {start} … {end} section to fill.")
    return text


def write_section(doc: Path, start: str, end: str, body: str, heading: str | None = None) -> None:
    """Replace the text between the markers ``start`` and ``end`` of ``doc`` with ``body``."""
    head, rest = page_with_section(doc, start, end, heading).split(start, 1)
    doc.write_text(f"{head}{start}\n{body}{end}{rest.split(end, 1)[1]}", encoding="utf-8")
