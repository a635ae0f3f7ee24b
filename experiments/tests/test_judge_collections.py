"""experiments/judge_collections.py: collections cut in step from two sets, blind order, scoring."""

from __future__ import annotations

import json

import judge_collections as study
import pytest


def poem_set(tag: str, firsts: str, size: int = 5) -> list[list[str]]:
    return [[first + tag * (size - 1)] * 4 for first in firsts]


def test_collections_pair_the_same_prompts_in_a_random_order():
    first, second = poem_set("甲", "春山江月风花"), poem_set("乙", "春山江月风花")
    pairs, key = study.collections(first, second, size=2, seed=0)
    assert len(pairs) == len(key) == 3 and [p["pair"] for p in pairs] == [1, 2, 3]
    for p, k in zip(pairs, key):
        ours, theirs = (p["A"], p["B"]) if k["generated"] == "A" else (p["B"], p["A"])
        assert "甲" in ours and "甲" not in theirs and "乙" in theirs
        assert ours.split("\n\n")[0][0] == "春山江月风花"[k["poems"][0]]  # the same openings on both sides
        assert len(ours.split("\n\n")) == 2
    many = [study.collections(first, second, 1, seed)[1] for seed in range(8)]
    assert {k["generated"] for key in many for k in key} == {"A", "B"}


def test_sets_that_do_not_match_are_refused():
    with pytest.raises(SystemExit, match="same prompts"):
        study.collections(poem_set("甲", "春山"), poem_set("乙", "山春"), 2, 0)
    with pytest.raises(SystemExit, match="mixes"):
        mixed = [poem_set(tag, "春") + poem_set(tag, "山", 7) for tag in "甲乙"]
        study.collections(*mixed, 2, 0)


def test_write_then_score(tmp_path, capsys):
    for name, tag in (("one", "甲"), ("two", "乙")):
        (tmp_path / f"{name}.json").write_text(json.dumps({"set": name, "poems": poem_set(tag, "春山江月")}), "utf-8")
    out = tmp_path / "judging"
    args = ["write", "--first", str(tmp_path / "one.json"), "--second", str(tmp_path / "two.json"), "--size", "2"]
    assert study.main([*args, "--out", str(out)]) == 0
    assert (out / "pairs.md").read_text(encoding="utf-8").count("## Pair") == 2
    key = json.loads((out / "key.json").read_text(encoding="utf-8"))
    answers = {str(k["pair"]): {"better": k["generated"], "reason": "x"} for k in key["key"]}
    answers["2"]["better"] = "B" if answers["2"]["better"] == "A" else "A"
    (out / "answers.json").write_text(json.dumps(answers), encoding="utf-8")
    capsys.readouterr()
    assert study.main(["score", "--key", str(out / "key.json"), "--answers", str(out / "answers.json")]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["settings"] == {"generated": "one", "other": "two"} and scored["generated_wins"] == 1


def test_size_one_writes_single_poem_pairs_and_limit_keeps_a_few():
    first, second = poem_set("甲", "春山江月风花"), poem_set("乙", "春山江月风花")
    pairs, key = study.collections(first, second, size=1, seed=3, limit=4)
    assert [p["pair"] for p in pairs] == [1, 2, 3, 4] and len({k["poems"][0] for k in key}) == 4
    assert study.markdown(pairs, 1).startswith("# Which poem is better?")
    assert study.markdown(pairs, 2).startswith("# Which collection is better?")


def test_pairs_whose_sides_are_the_same_are_left_out():
    first, second = poem_set("甲", "春山江月"), poem_set("甲", "春山") + poem_set("乙", "江月")
    pairs, key = study.collections(first, second, size=1, seed=0)
    assert sorted(k["poems"][0] for k in key) == [2, 3] and [p["pair"] for p in pairs] == [1, 2]
