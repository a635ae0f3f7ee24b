"""Writing a poem together: ranked candidates, no stray repeats, and keeping or redoing lines."""

from __future__ import annotations

import json
import random
from collections import deque

import pytest
import torch
from test_prosody import _model, _vocab_chars

from tangpoem_hf import InputError
from tangpoem_hf.constraints import stray_repeats
from tangpoem_hf.decoding import (
    REPEAT_PENALTY,
    generate_poem,
    generate_poems,
    rewrite_poem,
    score_lines,
    stream_poem,
    token_logprobs,
)
from tangpoem_hf.options import OPTIONS, PLAIN_SAMPLE
from tangpoem_hf.prosody import check_poem
from tangpoem_hf.request import PoemRequest
from tangpoem_hf.serving import PoemServer


@pytest.fixture(scope="module")
def model():
    """Random weights over ~2,400 real characters: the rules, not training, make the verse."""
    return _model(_vocab_chars())


# --- no stray repeats ------------------------------------------------------------------------------


def test_stray_repeats_allows_one_reduplicated_pair_and_forced_slots():
    assert stray_repeats(["声声慢寻觅", "冷清凄惨戚"]) == []  # 叠字
    assert stray_repeats(["声声声寻觅", "冷清凄惨戚"]) == ["声"]  # three is not a pair
    assert stray_repeats(["月落乌啼霜", "江月渔火对"]) == ["月"]
    assert stray_repeats(["月落乌啼霜", "江枫渔火对"]) == []
    assert stray_repeats(["春落乌啼霜", "春枫渔火对"], forced={0, 5}) == []  # both at forced slots
    assert stray_repeats(["春落乌啼春", "江枫渔火对"], forced={0}) == ["春"]  # a drawn one repeats a forced one
    assert stray_repeats(["霜落乌啼霜", "江枫渔火对"]) == ["霜"]  # not adjacent: not a pair


@pytest.mark.parametrize(("form", "lines"), [(5, 4), (7, 4), (5, 8), (7, 8), (7, 16)])
@pytest.mark.parametrize(
    "extra",
    [
        {"free": True},
        {"rhyme": True, "tone": "relaxed"},
        {"rhyme": True, "tone": "strict", "first": "春风"},
        {"first": "山山"},
    ],
    ids=["free", "regulated", "strict+first", "forced-pair"],
)
def test_no_repeat_over_many_seeds_and_forms(model, form, lines, extra):
    request = PoemRequest.build(
        model.tokenizer, form=form, lines=lines, num=16, seed=form * lines, no_repeat=True, **extra
    )
    poems = generate_poems(model, request=request)
    for poem in poems:
        assert stray_repeats(poem.lines, request.spec.forced) == [], poem.text
        assert not poem.notes, poem.notes
        if extra.get("rhyme"):
            report = check_poem(poem.text)
            assert report.rhyme_ok and report.relaxed_ok or lines == 16, report.text_report()


def test_no_repeat_with_an_acrostic_whose_heads_repeat(model):
    for poem in generate_poems(
        model, 8, acrostic="春江春月", form=7, seed=1, no_repeat=True, rhyme=True, tone="relaxed"
    ):
        assert [line[0] for line in poem.lines] == list("春江春月")
        assert stray_repeats(poem.lines, {0, 7, 14, 21}) == [] and check_poem(poem.text).passed


def test_without_no_repeat_random_poems_do_repeat(model):
    """The guard above is not vacuous: the same requests without the rule repeat characters."""
    poems = generate_poems(model, 16, form=7, lines=8, seed=56, **{**PLAIN_SAMPLE, "temperature": 0.5})
    assert sum(bool(stray_repeats(p.lines)) for p in poems) >= 4


def test_no_repeat_backs_off_with_a_note_when_the_vocabulary_runs_out():
    small = _model("春夏秋冬白日依山尽风花雪月")  # 13 characters for 20 slots
    poem = generate_poem(small, form=5, lines=4, seed=0, no_repeat=True, free=True, one_season=False)
    assert len(poem.lines) == 4 and poem.notes
    assert all("no repeat rule is broken" in n for n in poem.notes)


# --- candidates --------------------------------------------------------------------------------


def test_one_candidate_is_the_plain_poem_and_more_are_ranked(model):
    rules = {"rhyme": True, "tone": "relaxed", "no_repeat": False}
    plain = generate_poem(model, first="山", form=7, seed=3, search="poem", candidates=1, **rules)
    assert plain.others == [] and plain.candidate == 0
    best = generate_poem(model, first="山", form=7, seed=3, search="poem", candidates=6, **rules)
    scores = [best.score, *(p.score for p in best.others)]
    assert len(scores) == 6 and scores == sorted(scores, reverse=True)
    assert plain.text in [best.text, *(p.text for p in best.others)]  # candidate 0 is the plain poem
    assert {p.seed for p in [best, *best.others]} == {3} and len({p.candidate for p in [best, *best.others]}) == 6
    for poem in [best, *best.others]:
        assert poem.lines[0][0] == "山" and check_poem(poem.text).passed


def test_the_score_is_the_teacher_forced_score_of_the_text(model):
    poem = generate_poem(model, first="月", form=5, lines=8, seed=2, search="poem", candidates=4, no_repeat=True)
    for p in [poem, *poem.others]:
        assert p.score == pytest.approx(score_lines(model, p.lines, forced={0}), abs=1e-5)
    themed = generate_poem(model, first="月", form=5, seed=2, keywords="明月 江山")
    assert "明月" in "".join(themed.lines) and "江山" in "".join(themed.lines)
    assert themed.score == pytest.approx(score_lines(model, themed.lines, {0}), abs=1e-5)


def test_repeats_cost_score(model):
    repeated = ["白日依山尽", "黄河入海流", "欲穷千里目", "更上一层山"]
    chars, marks = token_logprobs(model, repeated)
    assert len(chars) == 20 and len(marks) == 5  # 4 marks and the end marker
    mean = (sum(chars) + sum(marks)) / (len(chars) + len(marks))
    assert score_lines(model, repeated) == pytest.approx(mean - REPEAT_PENALTY)
    assert score_lines(model, repeated, forced={3, 19}) == pytest.approx(mean)  # the user's own repeat is free


def test_num_keeps_meaning_distinct_poems_each_the_best_of_its_candidates(model):
    poems = generate_poems(model, 3, first="江", form=5, seed=10, search="poem", candidates=4)
    assert [p.seed for p in poems] == [10, 11, 12]
    for p in poems:
        alone = generate_poem(model, first="江", form=5, seed=p.seed, search="poem", candidates=4)
        assert p.text == alone.text and len(p.others) == 3


def test_streaming_candidates_ends_with_the_best(model):
    items = list(stream_poem(model, first="山", form=5, seed=4, search="poem", candidates=5))
    assert items[-1].text == generate_poem(model, first="山", form=5, seed=4, search="poem", candidates=5).text
    assert items[-1].score is not None and len(items[-1].others) == 4
    assert all(not p.finished for p in items[:-1])


def test_the_server_decodes_candidates_in_the_shared_step(model):
    server = PoemServer(model)
    try:
        poem = deque(server.stream(first="山", form=7, seed=8, search="poem", candidates=4, no_repeat=True), maxlen=1)[
            0
        ]
    finally:
        server.close()
    alone = generate_poem(model, first="山", form=7, seed=8, search="poem", candidates=4, no_repeat=True)
    assert poem.text == alone.text and [p.text for p in poem.others] == [p.text for p in alone.others]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"candidates": 0}, "candidates"), ({"candidates": 33}, "candidates"), ({"no_repeat": "yes"}, "no_repeat")],
)
def test_bad_candidate_settings(model, kwargs, message):
    with pytest.raises(InputError, match=message):
        generate_poem(model, form=5, **kwargs)


SWITCHES = [name for name, f in OPTIONS.items() if f.metadata["kind"] is bool]


def test_the_switches_are_the_on_off_settings():
    assert {"no_repeat", "one_season", "rhyme", "free"} <= set(SWITCHES)


@pytest.mark.parametrize("name", SWITCHES)
def test_every_switch_takes_only_true_or_false(model, name):
    """The string "false" would read as on: every on/off setting refuses it in one sentence."""
    with pytest.raises(InputError, match=f"^{name} must be True or False, not 'false'\\.$"):
        generate_poem(model, form=5, **{name: "false"})


# --- keep and redo lines ----------------------------------------------------------------------------


@pytest.mark.parametrize("tone", ["relaxed", "strict"])
def test_rewrite_keeps_lines_and_the_rules(model, tone):
    rng = random.Random(tone)
    for seed in range(12):
        form, count = rng.choice([(5, 4), (7, 4), (5, 8), (7, 8)])
        original = generate_poem(model, form=form, lines=count, seed=seed, rhyme=True, tone=tone)
        keep = sorted(rng.sample(range(count), rng.randint(1, count - 1)))
        new = rewrite_poem(model, original, keep, rhyme=True, tone=tone, seed=seed + 100, no_repeat=True)
        assert [new.lines[i] for i in keep] == [original.lines[i] for i in keep]
        assert any(new.lines[i] != original.lines[i] for i in range(count) if i not in keep)
        report = check_poem(new.text)
        assert report.passed and (report.strict_ok or tone == "relaxed"), (keep, report.text_report())
        assert not report.repeated_rhymes and not new.notes


def test_rewrite_names_the_kept_line_that_breaks_a_rule(model):
    poem = ["白日依山尽", "春风吹雪东", "秋月白日宫", "花月满日江"]  # 东 is 一东, 江 is 三江: they cannot rhyme
    rules = {"rhyme": True, "tone": "none", "no_repeat": False}
    new = rewrite_poem(model, poem, [1, 3], seed=0, **rules)
    assert new.lines[1] == "春风吹雪东" and new.lines[3] == "花月满日江"
    assert new.notes == [
        "The rhyme rule is broken at kept line 4, character 5 (江, a character you gave): "
        "it does not rhyme with the other lines."
    ]
    assert rewrite_poem(model, poem, [1, 2], seed=0, **rules).notes == []  # 宫 ends an odd line: no clash


def test_rewrite_keeps_the_acrostic_heads_and_the_model_reads_kept_lines(model):
    one = {"candidates": 1, "no_repeat": False}
    original = generate_poem(model, acrostic="春江花月", form=7, seed=1, rhyme=True, tone="relaxed", **one)
    new = rewrite_poem(model, original.text, [2], acrostic="春江花月", rhyme=True, tone="relaxed", seed=5, **one)
    assert [line[0] for line in new.lines] == list("春江花月") and new.lines[2] == original.lines[2]
    assert check_poem(new.text).passed
    # Line 4 is drawn after the kept line 3: a different kept line 3 changes what follows it.
    other = rewrite_poem(model, original.text, [2], acrostic="春江花月", seed=5, **PLAIN_SAMPLE)
    changed = rewrite_poem(
        model, [*original.lines[:2], "花" + "月" * 6, original.lines[3]], [2], acrostic="春江花月", seed=5,
        **PLAIN_SAMPLE,
    )  # fmt: skip
    assert other.lines[:2] == changed.lines[:2] and other.lines[3] != changed.lines[3]


@pytest.mark.parametrize(
    ("poem", "keep", "kwargs", "message"),
    [
        (["白日依山尽", "黄河入海流"], [5], {}, "line index"),
        (["白日依山尽", "黄河入海流"], ["0"], {}, "index"),
        (["白日依山尽", "黄河入海"], [0], {}, "5 or 7"),
        (["白日依山尽", "黄河入海流"], [0], {"form": 7}, "form"),
        (["白日依山尽", "黄河入海流"], [0], {"acrostic": "春江"}, "must have 春"),
    ],
)
def test_rewrite_errors_are_one_sentence(model, poem, keep, kwargs, message):
    with pytest.raises(InputError, match=message) as info:
        rewrite_poem(model, poem, keep, **kwargs)
    assert str(info.value).endswith(".") and "\n" not in str(info.value)


# --- the command line -------------------------------------------------------------------------------


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    from tangpoem_hf.cli import main

    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_candidates_no_repeat_json_and_regulated_defaults(model, tmp_path, capsys):
    model.save_pretrained(tmp_path / "m")
    base = ["generate", "--model", str(tmp_path / "m"), "--first", "山", "--seed", "3", "--json"]
    code, out, _ = _cli([*base, "--search", "poem", "--candidates", "4", "--no-repeat", "--num", "2"], capsys)
    rows = json.loads(out)
    assert code == 0 and [r["seed"] for r in rows] == [3, 4]
    for row in rows:
        alone = generate_poem(
            model, first="山", seed=row["seed"], search="poem", candidates=4, no_repeat=True, rhyme=True, tone="relaxed"
        )
        assert row["text"] == alone.text and row["score"] == pytest.approx(alone.score) and row["notes"] == []
        assert check_poem(row["text"]).passed  # 4 lines: rhyme and relaxed tone by default
    code, out, _ = _cli([*base, "--free"], capsys)
    assert json.loads(out)["text"] == generate_poem(model, first="山", seed=3, free=True).text
    code, out, _ = _cli([*base, "--lines", "6"], capsys)  # the default rules hold for every line count
    assert json.loads(out)["text"] == generate_poem(model, first="山", lines=6, seed=3, rhyme=True, tone="relaxed").text
    code, _, err = _cli([*base, "--free", "--tone", "strict"], capsys)
    assert code == 2 and "--free" in err and "Traceback" not in err
    code, _, err = _cli([*base, "--candidates", "0"], capsys)
    assert code == 2 and "candidates must be" in err


def test_server_and_decoder_start_from_the_models_start_state():
    """A model with a stored start state: the server's rows start there too, as forward(state=None) does."""
    plain = _model(_vocab_chars())
    started = _model(_vocab_chars())
    torch.manual_seed(1)
    started.set_start_state(torch.randn(1, 16), torch.randn(1, 16))
    request = {"form": 5, "seed": 6, "search": "poem", "candidates": 3}
    alone = generate_poem(started, **request)
    assert alone.text != generate_poem(plain, **request).text  # the start state matters
    server = PoemServer(started)
    try:
        served = deque(server.stream(**request), maxlen=1)[0]
    finally:
        server.close()
    assert served.text == alone.text and served.score == pytest.approx(alone.score)
    assert alone.score == pytest.approx(score_lines(started, alone.lines), abs=1e-5)
