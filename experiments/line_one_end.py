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

import argparse
import json
import sys
from pathlib import Path
from unittest import mock

from glued_doublings import draw_default, pairs_where_they_differ, score_split
from judge_pairs import write

from tangpoem_hf import verse
from tangpoem_hf.modeling import TangPoemLSTM, load_model
from tangpoem_hf.prosody import check_poem, load_table


def heard_unrhymed(lines: list[str]) -> list[str]:
    """Line 1's end, where line 1 is unrhymed and ends on a character with a 平 reading too."""
    report = check_poem("".join(f"{line}，" if i % 2 == 0 else f"{line}。" for i, line in enumerate(lines)))
    end = lines[0][-1]
    return [end] if report.rhyme_ok and not report.first_line_rhymes and "平" in load_table().tones(end) else []


def draw(model: TangPoemLSTM, num: int, rule: bool) -> list[dict]:
    """:func:`glued_doublings.draw_default` with the line-1 rule, or with line 1's requirement left as it was."""
    keep = verse._unrhymed_first_end if rule else (lambda req, first_rhymed, form: req)
    with mock.patch.object(verse, "_unrhymed_first_end", keep):
        return draw_default(model, num)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="draw both arms, write pairs.json, pairs.md, key.json and counts.json")
    w.add_argument("--out", type=Path, required=True)
    w.add_argument("--model", help="model folder (default: the bundled model)")
    w.add_argument("--num", type=int, default=6, help="seeds per first character and line length")
    s = sub.add_parser("score", help="the rule's win rate, overall and where the poem without it broke the rule")
    s.add_argument("--key", type=Path, required=True)
    s.add_argument("--answers", type=Path, required=True)
    args = parser.parse_args(argv)

    if args.command == "score":
        print(json.dumps(score_split(args.key, args.answers, "heard_unrhymed"), indent=2))
        return 0
    model = load_model(args.model)
    ruled, free = draw(model, args.num, rule=True), draw(model, args.num, rule=False)
    pairs, key = pairs_where_they_differ(ruled, free, fault=heard_unrhymed)
    write(args.out, pairs, key, {"generated": "the one default with the line-1 rule", "versus": "without"})
    counts = {
        "poems": len(ruled),
        "heard_unrhymed_with_rule": sum(bool(heard_unrhymed(p["lines"])) for p in ruled),
        "heard_unrhymed_without": sum(bool(heard_unrhymed(p["lines"])) for p in free),
        "differ": len(pairs),
    }
    (args.out / "counts.json").write_text(json.dumps(counts, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
