"""experiments/glued_doublings.py: the rule switched off for one arm, pairs where the arms differ, the score."""

from __future__ import annotations

import json
from types import SimpleNamespace

import glued_doublings as study

from tangpoem_hf import constraints


def test_glued_doublings_are_found_as_the_rule_sees_them():
    assert study.glued_doublings(["送君归去去", "秋水一声声"]) == ["归去去"]  # 一声声 stands in real lines
    assert study.glued_doublings(["三三两两入城来"]) == []  # the second 三 closes a doubling: no word with 两
    assert study.glued_doublings(["再三两两入城来"]) == ["三两两"]


def test_one_arm_draws_without_the_glued_pairs(monkeypatch):
    seen = []

    def fake_generate(model, num, **kwargs):
        seen.append(len(constraints.glued()))  # what NoRepeat.start would read now
        return [SimpleNamespace(seed=kwargs["seed"] + j, lines=["一二三四五"] * 4, text="x") for j in range(num)]

    monkeypatch.setattr(study, "generate_poems", fake_generate)
    assert len(study.draw(None, 2, rule=True)) == 2 * 2 * len(study.FIRSTS)
    assert min(seen) > 0
    seen.clear()
    study.draw(None, 1, rule=False)
    assert set(seen) == {0}
    assert len(constraints.glued()) > 0  # switched back on afterwards


def test_pairs_hold_only_the_prompts_that_differ():
    same = {"form": 5, "lines": ["一"], "text": "same"}
    ruled = [same, {"form": 5, "lines": ["送君归去远"], "text": "ruled"}]
    free = [same, {"form": 5, "lines": ["送君归去去"], "text": "free"}]
    pairs, key = study.pairs_where_they_differ(ruled, free)
    assert len(pairs) == len(key) == 1
    assert pairs[0][key[0]["generated"]] == "ruled" and key[0]["glued"] == ["归去去"]
    ruled.append({"form": 5, "lines": ["山中一片云"], "text": "ruled too"})  # differs, but holds no fault
    free.append({"form": 5, "lines": ["山中两片云"], "text": "free too"})
    assert len(study.pairs_where_they_differ(ruled, free)[0]) == 2
    pairs, key = study.pairs_where_they_differ(ruled, free, only_fault=True)
    assert [row["glued"] for row in key] == [["归去去"]]


def test_score_splits_the_glued_pairs_from_the_rest(tmp_path, capsys):
    key = [{"pair": i, "generated": "A", "glued": ["归去去"] if i <= 4 else []} for i in range(1, 9)]
    answers = {"1": "A", "2": "A", "3": "A", "4": "B", "5": "B", "6": "B", "7": "A", "8": {"better": "A"}}
    (tmp_path / "key.json").write_text(json.dumps({"key": key}), encoding="utf-8")
    (tmp_path / "answers.json").write_text(json.dumps(answers), encoding="utf-8")
    args = ["score", "--key", str(tmp_path / "key.json"), "--answers", str(tmp_path / "answers.json")]
    assert study.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert [report[k]["generated_wins"] for k in ("all", "glued", "other")] == [5, 3, 2]
    assert report["glued"]["pairs"] == 4 and report["all"]["sign_test_p"] == study.sign_test(5, 8)
    assert study.sign_test(14, 16) < 0.005 < study.sign_test(11, 20)
