"""The experiments' tables in a results page: each between its own pair of HTML comments, so a rerun
replaces its table and leaves the prose around it as the author wrote it."""

from __future__ import annotations

from pathlib import Path


def write_section(doc: Path, start: str, end: str, body: str, heading: str | None = None) -> None:
    """Replace the text between the markers ``start`` and ``end`` of ``doc`` with ``body``.

    A page with neither marker gets the section at its end under ``heading``; with no heading the
    section has a place chosen by hand, so its absence is an error, as is a marker out of place.
    """
    text = doc.read_text(encoding="utf-8") if doc.exists() else ""
    if heading is not None and start not in text and end not in text:
        text += f"\n{heading}\n\n{start}\n{end}\n"
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise SystemExit(f"{doc} has no single {start} … {end} section to fill.")
    head, rest = text.split(start, 1)
    doc.write_text(f"{head}{start}\n{body}{end}{rest.split(end, 1)[1]}", encoding="utf-8")
