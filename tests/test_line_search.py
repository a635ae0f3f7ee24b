"""Line-level search: a beam over lines keeps every rule, is deterministic, and finds likelier poems;
the coherence table is loaded and counts in the score."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_model
from test_prosody import _model, _vocab_chars

from tangpoem_hf import InputError
from tangpoem_hf.coherence import load_table
from tangpoem_hf.constraints import stray_repeats
from tangpoem_hf.decoding import (
    LineWalk,
    PoemRequest,
    PoemWalk,
    _combine,
    generate_poem,
    generate_poems,
    rewrite_poem,
    score_lines,
)
from tangpoem_hf.forking import select_state
from tangpoem_hf.prosody import check_poem
from tangpoem_hf.serving import PoemServer

LINES = {"search": "lines", "beam": 3, "line_candidates": 4}


@pytest.fixture(scope="module")
def verse_model():
    """Random weights over real characters of every rhyme group: the rules make the verse."""
    return _model(_vocab_chars())


@pytest.mark.parametrize(("form", "lines"), [(5, 4), (7, 4), (7, 8)])
def test_line_search_keeps_rhyme_tone_and_no_repeat(verse_model, form, lines):
    for seed in range(4):
        p = generate_poem(
            verse_model, form=form, lines=lines, seed=seed, rhyme=True, tone="strict", no_repeat=True, **LINES
        )
        r = check_poem(p.text)
        assert r.format_ok and r.rhyme_ok and r.strict_ok and not r.repeated_rhymes, r.text_report()
        assert not stray_repeats(p.lines) and not p.notes


def test_line_search_keeps_acrostic_keywords_and_kept_lines(verse_model):
    for seed in range(4):
        p = generate_poem(verse_model, acrostic="春夏秋冬", form=7, seed=seed, rhyme=True, tone="relaxed", **LINES)
        assert [line[0] for line in p.lines] == list("春夏秋冬")
        assert check_poem(p.text).passed and not p.notes
        k = generate_poem(verse_model, first="白", form=5, seed=seed, keywords="风花 雪月", **LINES)
        assert "风花" in "".join(k.lines) and "雪月" in "".join(k.lines) and not k.notes
        again = rewrite_poem(verse_model, k, keep=[1, 2], seed=seed + 10, rhyme=True, tone="relaxed", **LINES)
        assert again.lines[1:3] == k.lines[1:3]
        assert again.lines != k.lines


def test_line_search_is_deterministic_per_seed(tiny_model):
    a = generate_poem(tiny_model, first="山", seed=3, **LINES)
    b = generate_poem(tiny_model, first="山", seed=3, **LINES)
    assert a.text == b.text and a.score == b.score
    assert len({generate_poem(tiny_model, first="山", seed=s, **LINES).text for s in range(4)}) > 1
    batch = generate_poems(tiny_model, 3, first="山", seed=2, **LINES)
    assert batch[1].text == a.text


def test_line_search_finds_likelier_poems_than_plain_sampling():
    model = make_tiny_model(seed=1)
    plain = [generate_poem(model, first="月", seed=s).score for s in range(10)]
    search = [generate_poem(model, first="月", seed=s, **LINES).score for s in range(10)]
    assert sum(search) / 10 > sum(plain) / 10 + 0.05
    best = generate_poem(model, first="月", seed=0, **LINES)
    assert best.score == pytest.approx(score_lines(model, best.lines, forced={0}), abs=1e-5)
    assert all(o.score <= best.score for o in best.others)


def test_server_streams_the_line_search_poem(tiny_model):
    server = PoemServer(tiny_model)
    try:
        steps = list(server.stream(first="江", form=5, seed=4, **LINES))
    finally:
        server.close()
    assert steps[-1].text == generate_poem(tiny_model, first="江", form=5, seed=4, **LINES).text
    assert len(steps) == 20


def test_forked_states_mask_like_their_parents(verse_model):
    """After a line, each forked row allows exactly what its parent row allowed, and drawing in a
    forked row leaves the parent's state alone."""
    tok = verse_model.tokenizer
    req = PoemRequest.build(tok, form=5, lines=4, seed=1, num=4, rhyme=True, tone="strict", no_repeat=True)
    walk = PoemWalk(tok, "ours", req)
    logits = torch.randn(4, len(tok))
    for _ in range(10):  # two lines: a rhyme is set, tone patterns narrowed, characters used
        walk.fed(walk.advance(walk.choose(logits)), torch.randn(4, 2, len(tok)))
    rows = torch.tensor([2, 2, 0, 3, 1, 1])
    forked = [select_state(c, s, rows) for c, s in zip(walk.constraints, walk.states)]
    for slot in (walk.slot, 14, 19):  # the next line's start, a line end, a rhyme
        before = _combine(walk.constraints, walk.states, slot, walk.spec, len(tok)).expand(4, -1)
        after = _combine(walk.constraints, forked, slot, walk.spec, len(tok)).expand(6, -1)
        assert torch.equal(after, before[rows])
    before = _combine(walk.constraints, walk.states, walk.slot, walk.spec, len(tok)).expand(4, -1)
    for c, s in zip(walk.constraints, forked):
        c.observe(walk.slot, walk.spec, s, torch.tensor([tok.index["春"]] * 6))
    assert torch.equal(_combine(walk.constraints, walk.states, walk.slot, walk.spec, len(tok)).expand(4, -1), before)


def test_coherence_table_loads_and_counts_in_the_score(tiny_model):
    table = load_table()
    assert len(table.chars) >= 2000 and table.vectors.shape[0] == len(table.chars)
    assert table.pmi("塞", "胡") > 0.5 > table.pmi("春", "霜")  # frontier images go together; spring and frost not
    assert table.score(["床前明月光", "疑是地上霜", "举头望明月", "低头思故乡"]) > table.score(
        ["春风吹柳绿", "大雪满关山", "秋雁南飞尽", "荷花夏日香"]
    )
    p = generate_poem(tiny_model, first="山", seed=2, candidates=6, coherence=5.0)
    assert p.score == pytest.approx(score_lines(tiny_model, p.lines, {0}) + 5.0 * table.score(p.lines), abs=1e-4)
    assert all(o.score <= p.score for o in p.others)
    total = generate_poem(tiny_model, first="山", seed=2, score="sum")
    assert total.score < 4 * generate_poem(tiny_model, first="山", seed=2).score  # a sum over ~30 tokens


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"search": "beam"}, "search must be"),
        ({"search": "lines", "beam": 0}, "beam must be"),
        ({"search": "lines", "line_candidates": 99}, "line_candidates must be"),
        ({"search": "lines", "candidates": 4}, "candidates ranks whole poems"),
        ({"score": "max"}, "score must be"),
        ({"coherence": -1}, "coherence must be"),
    ],
)
def test_bad_search_settings_are_input_errors(tiny_model, kwargs, message):
    with pytest.raises(InputError, match=message):
        generate_poem(tiny_model, first="山", **kwargs)


def test_a_rule_that_cannot_fork_is_refused_for_line_search(tiny_model):
    from tangpoem_hf.constraints import Constraint

    class Mine(Constraint):
        name = "mine"

        def start(self, spec, tokenizer, batch_size):
            return [0] * batch_size

    with pytest.raises(InputError, match="line search"):
        generate_poem(tiny_model, first="山", constraints=[Mine()], **LINES)
    assert generate_poem(tiny_model, first="山", constraints=[Mine()]).finished


def test_line_walk_is_chosen_by_the_request(tiny_model):
    from tangpoem_hf.decoding import make_walk

    req = PoemRequest.build(tiny_model.tokenizer, first="山", **LINES)
    assert isinstance(make_walk(tiny_model.tokenizer, "ours", req), LineWalk)
    assert req.width == 12
