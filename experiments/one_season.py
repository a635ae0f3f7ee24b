"""The one-season rule, measured: the same prompts and seeds with and without it, judged blind.

Judges fault poems that change season halfway (春风初入洞庭秋). ``constraints.OneSeason`` refuses
the other seasons of 春夏秋冬 once a poem names one. This draws the one default as
``glued_doublings.py`` does, once with the rule and once with ``one_season=False``, counts the poems
that name two seasons or more, and writes the poems that differ as blind pairs (the rule's poem is
the key's "generated" one; the key's ``glued`` field holds the seasons the poem without it names)::

    python experiments/one_season.py write --out runs/judging/one-season --num 6
    # a judge who sees only runs/judging/one-season/pairs.md writes answers.json, then:
    python experiments/one_season.py score --key runs/judging/one-season/key.json --answers answers.json
"""

from __future__ import annotations

import sys

from glued_doublings import draw_default, rule_study

from tangpoem_hf.constraints import seasons_named
from tangpoem_hf.modeling import TangPoemLSTM


def mixed_seasons(lines: list[str]) -> list[str]:
    """The seasons a poem names, where it names more than one."""
    named = seasons_named(lines)
    return list(named) if len(named) > 1 else []


def draw(model: TangPoemLSTM, num: int, rule: bool, seed: int = 0) -> list[dict]:
    """:func:`glued_doublings.draw_default` with the one-season rule on or off."""
    return draw_default(model, num, seed, one_season=rule)


def main(argv: list[str] | None = None) -> int:
    return rule_study(argv, __doc__, draw, mixed_seasons, "mixed_seasons")


if __name__ == "__main__":
    sys.exit(main())
