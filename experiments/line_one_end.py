"""The line-1 rule, measured: the same prompts and seeds with and without it, judged blind.

A rhymed poem whose line 1 does not rhyme ends it on a 仄 character; a character with a 平 reading
too (间, 深, 屏) passed as 仄, but a reader hears it as a missed rhyme ("the first line breaks the
rhyme", the step-5,000 look at v5 in results.md). ``verse._unrhymed_first_end`` now asks for a
仄-only character there. This draws the one default as ``glued_doublings.py`` does, once with the
rule and once without it, and writes the poems that differ as blind pairs (the rule's poem is the
key's "generated" one; the key's ``glued`` field holds the line-1 end the poem without it heard as
平)::

    python experiments/line_one_end.py write --out runs/judging/line-one --num 6
    # a judge who sees only runs/judging/line-one/pairs.md writes answers.json, then:
    python experiments/line_one_end.py score --key runs/judging/line-one/key.json --answers answers.json
"""

from __future__ import annotations

import sys
from unittest import mock

from glued_doublings import draw_default, rule_study

from tangpoem_hf import verse
from tangpoem_hf.modeling import TangPoemLSTM
from tangpoem_hf.prosody import check_poem, load_table
from tangpoem_hf.text import join_lines


def heard_unrhymed(lines: list[str]) -> list[str]:
    """Line 1's end, where line 1 is unrhymed and ends on a character with a 平 reading too."""
    report = check_poem(join_lines(lines))
    end = lines[0][-1]
    return [end] if report.rhyme_ok and not report.first_line_rhymes and "平" in load_table().tones(end) else []


def draw(model: TangPoemLSTM, num: int, rule: bool, seed: int = 0) -> list[dict]:
    """:func:`glued_doublings.draw_default` with the line-1 rule, or with line 1's requirement left as it was."""
    keep = verse._unrhymed_first_end if rule else (lambda req, first_rhymed, form: req)
    with mock.patch.object(verse, "_unrhymed_first_end", keep):
        return draw_default(model, num, seed)


def main(argv: list[str] | None = None) -> int:
    return rule_study(argv, __doc__, draw, heard_unrhymed, "heard_unrhymed")


if __name__ == "__main__":
    sys.exit(main())
