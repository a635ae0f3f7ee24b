"""experiments/judge_pairs.py: blind pairs of generated and real held-out poems, and scoring a judge."""

from __future__ import annotations

import json

import judge_pairs

from tangpoem_hf.corpus import build_splits
from tangpoem_hf.text import split_lines


def test_pairs_hold_one_real_heldout_poem_and_one_of_ours(small_corpus, tiny_model_dir, tmp_path, capsys):
    judge = judge_pairs
    out = tmp_path / "judging"
    args = ["write", "--out", str(out), "--model", str(tiny_model_dir), "--corpus", str(small_corpus)]
    assert judge.main([*args, "--form", "五绝", "--num", "8", "--settings", "plain"]) == 0
    pairs = json.loads((out / "pairs.json").read_text(encoding="utf-8"))["pairs"]
    key = json.loads((out / "key.json").read_text(encoding="utf-8"))
    assert key["settings"] == {**judge.PRESETS["plain"], "model": str(tiny_model_dir)}  # what wrote "generated"
    splits, _ = build_splits(str(small_corpus))
    heldout = {
        "".join(split_lines(t)) for s in ("validation", "test") for t, f in zip(splits[s]["text"], splits[s]["form"])
    }
    train = {"".join(split_lines(t)) for t in splits["train"]["text"]} - heldout
    five = [t for s in ("validation", "test") for t, f in zip(splits[s]["text"], splits[s]["form"]) if f == "五绝"]
    assert len(pairs) == len(key["key"]) == min(8, len(five)) >= 2
    for pair, row in zip(pairs, key["key"]):
        ours = pair[row["generated"]]
        real = pair["B" if row["generated"] == "A" else "A"]
        flat = [p.replace("，", "").replace("。", "").replace("\n", "") for p in (ours, real)]
        assert flat[1] in heldout and flat[1] not in train  # a real poem the model never trained on
        assert flat[0][0] == flat[1][0] and len(flat[0]) == len(flat[1]) == 20  # same first character and form
    markdown = (out / "pairs.md").read_text(encoding="utf-8")
    assert f"## Pair {len(pairs)}" in markdown and "generated" not in markdown and "seed" not in markdown

    # Without --settings, the poems are drawn with the one default every interface uses.
    assert judge.main([*args, "--form", "五绝", "--num", "2"]) == 0
    assert json.loads((out / "key.json").read_text(encoding="utf-8"))["settings"] == {"model": str(tiny_model_dir)}


def test_the_order_is_random_per_pair(tiny_model):
    judge = judge_pairs
    texts = ["床前明月光，疑是地上霜。举头望明月，低头思故乡。", "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"] * 6
    pairs, key = judge.make_pairs(tiny_model, texts, "五绝", 12, {}, seed=0)
    assert len(pairs) == 12 and {row["generated"] for row in key} == {"A", "B"}
    for pair, row in zip(pairs, key):
        assert pair["B" if row["generated"] == "A" else "A"].replace("\n", "") in texts


def test_versus_pairs_two_settings_on_the_same_first_character(tiny_model):
    from tangpoem_hf.decoding import generate_poem

    judge = judge_pairs
    texts = ["床前明月光，疑是地上霜。举头望明月，低头思故乡。", "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"] * 3
    ruled = {"rhyme": True, "tone": "relaxed"}
    pairs, key = judge.make_pairs(tiny_model, texts, "五绝", 6, ruled, seed=0, versus={"no_repeat": True})
    for pair, row in zip(pairs, key):
        mine, other = pair[row["generated"]], pair["B" if row["generated"] == "A" else "A"]
        assert other.replace("\n", "") not in texts and other[0] == mine[0]  # no real poem: a rival of ours
        rival = generate_poem(tiny_model, first=mine[0], form=5, lines=4, seed=row["seed"], no_repeat=True)
        assert other == rival.text
        assert mine == generate_poem(tiny_model, first=mine[0], form=5, lines=4, seed=row["seed"], **ruled).text


def test_versus_model_pits_two_models_with_the_same_settings(tiny_model):
    from conftest import make_tiny_model

    from tangpoem_hf.decoding import generate_poem

    judge = judge_pairs
    older = make_tiny_model(seed=1)
    texts = ["床前明月光，疑是地上霜。举头望明月，低头思故乡。", "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"] * 3
    ruled = {"rhyme": True, "tone": "relaxed"}
    pairs, key = judge.make_pairs(tiny_model, texts, "五绝", 6, ruled, seed=0, versus_model=older)
    for pair, row in zip(pairs, key):
        mine, other = pair[row["generated"]], pair["B" if row["generated"] == "A" else "A"]
        shape = {"first": mine[0], "form": 5, "lines": 4, "seed": row["seed"], **ruled}
        assert mine == generate_poem(tiny_model, **shape).text and other == generate_poem(older, **shape).text


def test_score_answers_against_the_key():
    judge = judge_pairs
    key = [{"pair": 1, "generated": "A"}, {"pair": 2, "generated": "B"}, {"pair": 3, "generated": "B"}]
    answers = {"1": {"better": "A", "reason": "a clear last line"}, "2": "A", "3": {"better": "B"}}
    result = judge.score_answers(answers, key)
    assert (result["pairs"], result["generated_wins"]) == (3, 2) and abs(result["win_rate"] - 2 / 3) < 1e-12
    assert result["reasons"] == [{"pair": 1, "generated_won": True, "reason": "a clear last line"}]
    assert judge.score_answers({"1": "A"}, key)["unanswered"] == [2, 3]


def test_merge_shuffles_and_keeps_each_key_with_its_pair(tmp_path):
    judge = judge_pairs
    for name, generated in (("a", "A"), ("b", "B")):
        pairs = [{"pair": i, "A": f"{name}{i}A", "B": f"{name}{i}B"} for i in (1, 2, 3)]
        key = [{"pair": i, "generated": generated, "form": name} for i in (1, 2, 3)]
        judge.write(tmp_path / name, pairs, key, {"rhyme": True})
    pairs, key, settings = judge.merge([tmp_path / "a", tmp_path / "b"], seed=1)
    assert [p["pair"] for p in pairs] == [k["pair"] for k in key] == list(range(1, 7))
    assert settings == {"rhyme": True}
    for pair, row in zip(pairs, key):  # each generated poem is still the one its key names
        assert pair[row["generated"]].startswith(row["form"]) and pair[row["generated"]].endswith(row["generated"])
    assert [p["A"][0] for p in pairs] != sorted(p["A"][0] for p in pairs)  # shuffled, not a then b
