"""experiments/one_season.py: the rule switched off for one arm, and what the key records."""

from __future__ import annotations

from types import SimpleNamespace

import glued_doublings
import one_season as study


def test_mixed_seasons_lists_the_seasons_only_where_there_are_two():
    assert study.mixed_seasons(["春风初入洞庭秋", "一片千峰万里愁"]) == ["春", "秋"]
    assert study.mixed_seasons(["春风吹柳絮", "花落满春城"]) == []


def test_the_arms_differ_only_in_the_rule(monkeypatch):
    seen = []

    def fake_generate(model, num, **kwargs):
        seen.append(kwargs["one_season"])
        return [SimpleNamespace(seed=kwargs["seed"] + j, lines=["一二三四五"] * 4, text="x") for j in range(num)]

    monkeypatch.setattr(glued_doublings, "generate_poems", fake_generate)
    assert len(study.draw(None, 2, rule=True)) == 2 * 2 * len(glued_doublings.FIRSTS)
    assert set(seen) == {True}
    seen.clear()
    study.draw(None, 1, rule=False)
    assert set(seen) == {False}
