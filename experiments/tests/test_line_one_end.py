"""experiments/line_one_end.py: the fault as a reader hears it, and the rule switched off for one arm."""

from __future__ import annotations

from types import SimpleNamespace

import glued_doublings
import line_one_end as study
import torch

from tangpoem_hf import verse


def test_a_line_one_end_heard_as_a_missed_rhyme_is_found():
    rest = ["一夜清风满户扉", "今日不知何处去", "故园春色几时归"]
    assert study.heard_unrhymed(["乱云萧瑟绿阴深", *rest]) == ["深"]  # 深 reads 平 (侵) as well as 仄
    assert study.heard_unrhymed(["乱云萧瑟绿阴月", *rest]) == []  # 仄 only
    assert study.heard_unrhymed(["乱云萧瑟绿阴飞", *rest]) == []  # line 1 rhymes


def test_one_arm_draws_without_the_rule(monkeypatch):
    req, first_rhymed = torch.full((2, 28), 2), torch.tensor([True, False])  # _NEED_ZE everywhere
    seen = []

    def fake_generate(model, num, **kwargs):
        seen.append(not torch.equal(verse._unrhymed_first_end(req, first_rhymed, 7), req))
        return [SimpleNamespace(seed=kwargs["seed"] + j, lines=["一二三四五"] * 4, text="x") for j in range(num)]

    monkeypatch.setattr(glued_doublings, "generate_poems", fake_generate)
    assert len(study.draw(None, 1, rule=True)) == 2 * len(glued_doublings.FIRSTS)
    assert set(seen) == {True}
    seen.clear()
    study.draw(None, 1, rule=False)
    assert set(seen) == {False}
    assert not torch.equal(verse._unrhymed_first_end(req, first_rhymed, 7), req)  # switched back on afterwards
