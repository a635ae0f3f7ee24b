"""experiments/stock_penalty.py: the patched ranking score, and the list and draw commands."""

from __future__ import annotations

import json

import stock_penalty as study

from tangpoem_hf import decoding


def test_the_score_loses_the_penalty_once_per_listed_phrase():
    lines = ["不知何处是", "明月照高楼"]
    plain = decoding._score(-60.0, 30, lines, ())
    with study.penalised(["不知何处", "明月照", "白日依"], 0.25):
        assert decoding._score(-60.0, 30, lines, ()) == plain - 0.5
    assert decoding._score(-60.0, 30, lines, ()) == plain  # unpatched again


def test_list_then_draw(tmp_path, small_corpus, tiny_model_dir, capsys):
    common = ["--model", str(tiny_model_dir), "--num", "2", "--corpus", str(small_corpus)]
    assert study.main(["list", *common, "--seed", "1", "--out", str(tmp_path / "list.json")]) == 0
    assert isinstance(json.loads((tmp_path / "list.json").read_text(encoding="utf-8")), list)
    (tmp_path / "list.json").write_text(json.dumps(["不知何处"]), encoding="utf-8")
    args = ["draw", *common, "--phrases", str(tmp_path / "list.json"), "--penalty", "0.3"]
    assert study.main([*args, "--out", str(tmp_path / "set.json")]) == 0
    drawn = json.loads((tmp_path / "set.json").read_text(encoding="utf-8"))
    assert drawn["set"] == f"{tiny_model_dir} stock penalty 0.3" and [len(p) for p in drawn["poems"]] == [4, 4]
    assert "stock phrases, in" in capsys.readouterr().out
