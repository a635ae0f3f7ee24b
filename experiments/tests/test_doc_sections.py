"""experiments/doc_sections.py: a table replaces its own section of a results page and nothing else."""

from __future__ import annotations

import pytest
from doc_sections import write_section

START, END = "<!-- t: x.py -->", "<!-- end of t -->"
PAGE = f"# Results\n\nprose before\n\n{START}\nold table\n{END}\n\nprose after, <!-- other -->\n"


def test_the_table_replaces_its_section_and_leaves_the_page_around_it(tmp_path):
    doc = tmp_path / "results.md"
    doc.write_text(PAGE, encoding="utf-8")
    write_section(doc, START, END, "new table\n")
    assert doc.read_text(encoding="utf-8") == PAGE.replace("old table\n", "new table\n")
    write_section(doc, START, END, "newer\n", heading="## T")  # markers found: the heading is not added
    assert doc.read_text(encoding="utf-8") == PAGE.replace("old table\n", "newer\n")


def test_a_page_without_the_section_gets_it_at_the_end_and_a_broken_one_is_refused(tmp_path):
    doc = tmp_path / "results.md"
    with pytest.raises(SystemExit, match="no single <!-- t: x.py --> … <!-- end of t --> section"):
        write_section(doc, START, END, "table\n")  # no heading: the section's place is chosen by hand
    write_section(doc, START, END, "table\n", heading="## T")
    assert doc.read_text(encoding="utf-8") == f"\n## T\n\n{START}\ntable\n{END}\n"
    for broken in (f"{END}\n{START}\n", f"{START}\n{END}\n{START}\n{END}\n", f"{START}\n"):
        doc.write_text(broken, encoding="utf-8")
        with pytest.raises(SystemExit, match="no single"):
            write_section(doc, START, END, "table\n", heading="## T")
        assert doc.read_text(encoding="utf-8") == broken
