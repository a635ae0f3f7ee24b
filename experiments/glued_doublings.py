"""The glued-doubling rule, measured: the same prompts and seeds with and without it, judged blind.

``NoRepeat`` refuses a doubling right after a character the doubled one forms a common word with
where the Tang corpus never doubles it (归去去 reads as 归去 and a stray 去; ``attested.glued``).
This draws the one default for 34 first characters × ``--num`` seeds × both line lengths, once with
the rule and once without it (the rule's pairs emptied), counts the glued doublings each holds, and
writes the poems that differ as blind pairs in ``judge_pairs.py``'s format (the rule's poem is the
key's "generated" one)::

    python experiments/glued_doublings.py write --out runs/judging/glued --num 6
    # a judge who sees only runs/judging/glued/pairs.md writes answers.json, then:
    python experiments/glued_doublings.py score --key runs/judging/glued/key.json --answers answers.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable, Sequence
from math import comb
from pathlib import Path
from unittest import mock

from judge_pairs import score_answers, write

from tangpoem_hf import constraints
from tangpoem_hf.constraints import doubling_allowed
from tangpoem_hf.decoding import generate_poems
from tangpoem_hf.modeling import TangPoemLSTM, load_model

FIRSTS = "春山江月风花云水秋夜日雨雪天海孤白青清长远归寒落高南北东西明古故行空"


def glued_doublings(lines: Sequence[str]) -> list[str]:
    """The doublings a poem holds right after a character they are glued to, with that character (归去去)."""
    return [
        line[c - 1 : c + 2]
        for line in lines
        for c in range(1, len(line) - 1)
        if line[c] == line[c + 1] and not doubling_allowed(line, c)
    ]


def draw_default(model: TangPoemLSTM, num: int, seed: int = 0, **settings: object) -> list[dict]:
    """The one default (with ``settings`` changed) for every first character, both line lengths and
    ``num`` seeds each (first character i from ``seed + 100 * i``)."""
    poems = []
    for form in (5, 7):
        for i, first in enumerate(FIRSTS):
            for poem in generate_poems(model, num, first=first, form=form, seed=seed + 100 * i, **settings):
                poems.append({"form": form, "seed": poem.seed, "lines": poem.lines, "text": poem.text})
    return poems


def draw(model: TangPoemLSTM, num: int, rule: bool, seed: int = 0) -> list[dict]:
    """:func:`draw_default` with the glued-doubling rule, or with its pairs emptied."""
    with mock.patch.object(constraints, "glued", constraints.glued if rule else dict):
        return draw_default(model, num, seed)


def pairs_where_they_differ(
    ruled: list[dict],
    free: list[dict],
    seed: int = 11,
    fault: Callable[[list[str]], list[str]] = glued_doublings,
    only_fault: bool = False,
) -> tuple[list[dict], list[dict]]:
    """(pairs, key) for the prompts whose two poems differ (``only_fault``: and whose poem without the
    rule holds the fault), shuffled, each in a random order; the key keeps what ``fault`` finds in
    the poem without the rule (as ``glued``)."""
    rng = random.Random(seed)
    differ = [
        i
        for i, (a, b) in enumerate(zip(ruled, free))
        if a["text"] != b["text"] and (not only_fault or fault(b["lines"]))
    ]
    rng.shuffle(differ)
    pairs, key = [], []
    for k, i in enumerate(differ, start=1):
        ruled_first = rng.random() < 0.5
        a, b = (ruled[i], free[i]) if ruled_first else (free[i], ruled[i])
        pairs.append({"pair": k, "A": a["text"], "B": b["text"]})
        glued = fault(free[i]["lines"])
        key.append({"pair": k, "generated": "A" if ruled_first else "B", "form": free[i]["form"], "glued": glued})
    return pairs, key


def sign_test(wins: int, n: int) -> float:
    """Two-sided sign-test p against even odds."""
    k = max(wins, n - wins)
    return min(1.0, 2 * sum(comb(n, j) for j in range(k, n + 1)) / 2**n) if n else float("nan")


def rule_study(
    argv: list[str] | None,
    doc: str,
    draw: Callable[..., list[dict]],
    fault: Callable[[list[str]], list[str]],
    name: str,
) -> int:
    """The ``write`` and ``score`` commands of a study that draws the one default with and without a
    rule (``draw(model, num, rule, seed)``); ``fault`` finds what the rule prevents, counted as ``name``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="draw both arms, write pairs.json, pairs.md, key.json and counts.json")
    w.add_argument("--out", type=Path, required=True)
    w.add_argument("--model", help="model folder (default: the bundled model)")
    w.add_argument("--num", type=int, default=6, help="seeds per first character and line length")
    w.add_argument("--seed", type=int, default=0, help="first character i draws from seed + 100 × i")
    w.add_argument(
        "--only-fault", action="store_true", help="pair only the prompts whose poem without the rule holds the fault"
    )
    s = sub.add_parser("score", help="the rule's win rate, overall and where the poem without it held the fault")
    s.add_argument("--key", type=Path, required=True)
    s.add_argument("--answers", type=Path, required=True)
    args = parser.parse_args(argv)

    if args.command == "score":
        print(json.dumps(score_split(args.key, args.answers, name), indent=2))
        return 0
    model = load_model(args.model)
    ruled, free = draw(model, args.num, rule=True, seed=args.seed), draw(model, args.num, rule=False, seed=args.seed)
    pairs, key = pairs_where_they_differ(ruled, free, fault=fault, only_fault=args.only_fault)
    write(args.out, pairs, key, {"generated": f"the one default with the {name} rule", "versus": "without"})
    counts = {
        "poems": len(ruled),
        f"{name}_with_rule": sum(bool(fault(p["lines"])) for p in ruled),
        f"{name}_without": sum(bool(fault(p["lines"])) for p in free),
        "differ": len(pairs),
    }
    (args.out / "counts.json").write_text(json.dumps(counts, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(counts))
    return 0


def score_split(key_path: Path, answers_path: Path, fault: str = "glued") -> dict:
    """The rule's wins with sign tests: over all pairs, where the poem without it held the fault, and the rest."""
    key = json.loads(key_path.read_text(encoding="utf-8"))["key"]
    answers = json.loads(answers_path.read_text(encoding="utf-8"))
    report = {}
    for name, rows in (
        ("all", key),
        (fault, [r for r in key if r["glued"]]),
        ("other", [r for r in key if not r["glued"]]),
    ):
        got = score_answers(answers, rows)
        report[name] = {k: got[k] for k in ("pairs", "generated_wins", "win_rate")}
        report[name]["sign_test_p"] = sign_test(got["generated_wins"], got["pairs"])
    return report


def main(argv: list[str] | None = None) -> int:
    return rule_study(argv, __doc__, draw, glued_doublings, "glued")


if __name__ == "__main__":
    sys.exit(main())
