"""The control segment (form, title, keywords) and the keyword constraint (issue 14, parts 1–3)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import POEMS, make_tiny_model

from tangpoem_hf import CharTokenizer, TangPoemConfig, TangPoemLSTM
from tangpoem_hf.app_support import theme_kwargs
from tangpoem_hf.batching import PoemBatches, StreamBatches
from tangpoem_hf.cli import main
from tangpoem_hf.control import (
    CONTROL_TOKENS,
    WORD_STARTS,
    Control,
    ControlledPoems,
    cached_keywords,
    control_ids,
    extract_keywords,
    with_controls,
)
from tangpoem_hf.decoding import PoemWalk, generate_poem, generate_poems, score_lines
from tangpoem_hf.errors import InputError, ModelFileError
from tangpoem_hf.modeling import IGNORE_INDEX
from tangpoem_hf.scoring import perplexity, token_losses
from tangpoem_hf.text import clean_poem_text, split_lines
from tangpoem_hf.train_config import TrainConfig
from tangpoem_hf.training import Trainer

TEXTS = [clean_poem_text("".join(p)) for _, _, p in POEMS]
TITLES = [clean_poem_text(t) for _, t, _ in POEMS]


def control_model(seed: int = 0) -> TangPoemLSTM:
    """A tiny random model whose vocabulary has the control tokens."""
    old = make_tiny_model()
    tok = with_controls(old.tokenizer)
    torch.manual_seed(seed)
    model = TangPoemLSTM(TangPoemConfig(vocab_size=len(tok), embedding_dim=16, hidden_size=24, control=True))
    model.tokenizer = tok
    return model.eval()


def controlled(texts=TEXTS, seed=0, drop_title=0.5, drop_keywords=0.5) -> ControlledPoems:
    tok = with_controls(CharTokenizer.build(texts))
    controls = [Control(t, k) for t, k in zip(TITLES, extract_keywords(texts * 4, min_count=2))]
    return ControlledPoems(texts, controls, tok, seed, drop_title, drop_keywords)


# --- vocabulary and layout ------------------------------------------------------------------------


def test_control_tokens_are_appended_and_older_folders_still_load(tmp_path, tiny_model_dir):
    old = TangPoemLSTM.from_pretrained(tiny_model_dir)
    assert old.config.control is False and not any(t in old.tokenizer for t in CONTROL_TOKENS)
    model = control_model()
    assert model.tokenizer.tokens[: len(old.tokenizer)] == old.tokenizer.tokens  # no id moved
    assert model.tokenizer.tokens[len(old.tokenizer) :] == list(CONTROL_TOKENS)
    assert model.config.vocab_size == len(old.tokenizer) + len(CONTROL_TOKENS)
    model.save_pretrained(tmp_path / "control")
    assert TangPoemLSTM.from_pretrained(tmp_path / "control").config.control is True
    config = json.loads((tmp_path / "control" / "config.json").read_text())
    (tmp_path / "control" / "config.json").write_text(json.dumps({**config, "control": False}))
    with pytest.raises(ModelFileError, match="control=False"):
        TangPoemLSTM.from_pretrained(tmp_path / "control")


def test_the_control_layout():
    tok = control_model().tokenizer
    ids = control_ids(tok, "七绝", Control("山行", ("白云", "霜叶")))
    assert [tok.tokens[i] for i in ids] == [
        "<bos>", "<form:七绝>", "<title>", "山", "行", "<kw>", "白", "云", "<kw>", "霜", "叶", "<poem>",
    ]  # fmt: skip
    assert [tok.tokens[i] for i in control_ids(tok, "other")] == ["<bos>", "<form:other>", "<poem>"]
    assert tok.decode(ids) == "山行白云霜叶"  # control tokens are never printed


# --- keywords -------------------------------------------------------------------------------------


def test_keywords_are_words_of_the_poem_at_word_positions():
    keywords = extract_keywords(TEXTS * 4, min_count=2)  # four copies, as the 全唐诗 holds copies
    assert keywords == extract_keywords(list(TEXTS * 4), min_count=2)  # deterministic
    assert sum(map(len, keywords)) > 3 * len(keywords)
    assert keywords[9] == ("国破", "山河", "城春", "草木")  # 春望: TF-IDF ties go to the earlier word
    for text, words in zip(TEXTS, keywords):
        assert len(words) <= 4
        assert all(not set(a) & set(b) for i, a in enumerate(words) for b in words[i + 1 :])  # 明月 ≠ 月光
        for word in words:
            assert any(line.find(word, s) == s for line in split_lines(text) for s in WORD_STARTS[len(line)])
            assert not set(word) & set("不无何之一")


def test_keywords_are_cached(tmp_path, monkeypatch):
    first = cached_keywords(TEXTS, tmp_path, min_count=2)
    assert len(list(tmp_path.glob("keywords-*.json"))) == 1
    monkeypatch.setattr("tangpoem_hf.control.extract_keywords", lambda *a, **k: pytest.fail("not cached"))
    assert cached_keywords(TEXTS, tmp_path, min_count=2) == first


def test_titles_and_keywords_are_dropped_per_epoch_deterministically():
    a, b = controlled(seed=3), controlled(seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a.epoch(2), b.epoch(2)))  # what --resume relies on
    assert any(not np.array_equal(x, y) for x, y in zip(a.epoch(1), a.epoch(2)))
    tok = a.tok
    seen = set()
    for epoch in range(8):
        poems = a.epoch(epoch)
        assert abs(sum(map(len, poems)) - a.expected_total) < 0.1 * a.expected_total
        for poem, full in zip(poems, a.full):
            assert len(poem) <= len(full)
            seen.add((tok.index["<title>"] in poem, tok.index["<kw>"] in poem))
    assert seen == {(False, False), (True, False), (False, True), (True, True)}


# --- control positions are context, never targets --------------------------------------------------


def _targets_of(poems: ControlledPoems, epoch: int) -> int:
    """How many real targets an epoch has: every token of every poem after <poem>."""
    return sum(len(p) - list(p).index(poems.poem_id) - 1 for p in poems.epoch(epoch))


def test_control_targets_are_minus_100_in_both_batchings():
    poems = controlled()
    control_ids_set = set(poems.form_ids) | {poems.tok.index[t] for t in ("<title>", "<kw>", "<poem>")}
    per_poem = PoemBatches(poems, tokens=4000, pad_id=0, seed=0)
    ys = [per_poem.get(1, s)[1] for s in range(per_poem.steps_per_epoch)]
    real = sum(int(((y != IGNORE_INDEX) & (y != 0)).sum()) for y in ys)
    assert real == _targets_of(poems, 1)
    for y in ys:
        assert not set(y[y >= 0].tolist()) & control_ids_set
    stream = StreamBatches(poems, batch_size=2, seq_len=16, seed=0)
    x, y = (torch.cat(t, dim=1) for t in zip(*(stream.get(1, s) for s in range(stream.steps_per_epoch))))
    assert not set(y[y >= 0].tolist()) & control_ids_set
    # what follows <title> (the title's characters) and <poem>'s own position are read, never predicted
    for token in ("<title>", "<kw>", "<form:七绝>"):
        where = (x == poems.tok.index[token]).nonzero().tolist()
        assert where and all(int(y[r, c]) == IGNORE_INDEX for r, c in where), token
    where = (x == poems.poem_id).nonzero().tolist()
    assert where and all(int(y[r, c]) != IGNORE_INDEX for r, c in where)  # the first character is a target


def test_perplexity_scores_the_same_tokens_with_or_without_a_theme():
    model, old = control_model(), make_tiny_model()
    texts = TEXTS[:3]
    _, plain = token_losses(model, texts)
    total, themed = token_losses(model, texts, controls=[Control("山行", ("白云",))] * 3)
    _, reference = token_losses(old, texts)
    assert plain == themed == reference  # characters, ，/。 and <eos>; never a control token
    assert total != token_losses(model, texts)[0]  # but the theme is read


# --- generation -----------------------------------------------------------------------------------

SHAPES = [
    {"form": 5, "lines": 4},
    {"form": 7, "lines": 8, "rhyme": True, "tone": "relaxed"},
    {"form": 5, "lines": 2, "first": "白"},
    {"form": 7, "acrostic": "春山月", "no_repeat": True},
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(f"{k}{v}" for k, v in s.items()))
@pytest.mark.parametrize("keywords", [["明月"], ["白云", "故人"], ["千里", "黄河", "山"]])
def test_every_keyword_stands_whole_in_every_poem(shape, keywords):
    model = make_tiny_model()
    poems = generate_poems(model, 60, keywords=keywords, seed=0, temperature=1.5, **shape)
    starts = set()
    for poem in poems:
        assert len(poem.lines) == (len(shape["acrostic"]) if "acrostic" in shape else shape["lines"])
        assert all(len(line) == shape["form"] for line in poem.lines)
        for word in keywords:
            assert any(word in line for line in poem.lines), (word, poem.text)
        starts.add("".join(poem.lines).find(keywords[0]))
        assert not any("keyword" in note for note in poem.notes)
    if "first" not in shape and "acrostic" not in shape:
        assert len(starts) > 3  # the model's draws place the word, not a fixed slot


def test_a_keyword_is_placed_where_the_model_likes_it():
    model = make_tiny_model()
    model.head.bias.data[model.tokenizer.index["白"]] += 8.0  # the model wants 白 anywhere
    poems = generate_poems(model, 20, keywords="白云", form=5, lines=4, seed=0)
    assert all("".join(p.lines).find("白云") == 0 for p in poems)  # at the first slot it can start


def test_a_control_model_reads_the_form_title_and_keywords_first():
    model = control_model()
    request_kwargs = {"form": 7, "lines": 4, "title": "山行", "keywords": "白云 霜叶", "seed": 1}
    from tangpoem_hf.request import PoemRequest

    walk = PoemWalk(model.tokenizer, "ours", PoemRequest.build(model.tokenizer, **request_kwargs))
    assert walk.context == control_ids(model.tokenizer, "七绝", Control("山行", ("白云", "霜叶")))
    five_eight = PoemRequest.build(model.tokenizer, form=5, lines=8)
    assert model.tokenizer.tokens[PoemWalk(model.tokenizer, "ours", five_eight).context[1]] == "<form:五律>"
    titled = [generate_poem(model, form=5, title="山行", seed=s, temperature=2.0).text for s in range(6)]
    plain = [generate_poem(model, form=5, seed=s, temperature=2.0).text for s in range(6)]
    assert titled != plain  # the title conditions the poem
    poem = generate_poem(model, **request_kwargs, search="poem", candidates=3)
    assert poem.score == pytest.approx(
        score_lines(model, poem.lines, (), title="山行", keywords=("白云", "霜叶")), abs=1e-5
    )


def test_a_model_without_controls_refuses_a_title_in_one_sentence():
    with pytest.raises(InputError, match="cannot read a title: give keywords instead"):
        generate_poem(make_tiny_model(), title="山行")


def test_the_theme_box_tells_a_title_from_keywords():
    old, new = make_tiny_model().tokenizer, control_model().tokenizer
    assert theme_kwargs(new, " 山行 ") == {"title": "山行"}
    assert theme_kwargs(old, "山行") == {"keywords": ["山行"]}  # an older model reads no title
    assert theme_kwargs(new, "白云 霜叶") == theme_kwargs(old, "白云、霜叶") == {"keywords": ["白云", "霜叶"]}
    assert theme_kwargs(new, "  ") == {}
    with pytest.raises(InputError, match="主题"):
        theme_kwargs(new, "white clouds")


# --- training and the CLI ---------------------------------------------------------------------------


def test_train_with_controls_then_generate_and_score_with_a_theme(small_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = TrainConfig(
        corpus=str(small_corpus), out_dir=str(out), embedding_dim=16, hidden_size=16, batch_size=4, seq_len=16,
        max_steps=6, epochs=2, progress=False, lr=0.01, keyword_min_count=2,
    )  # fmt: skip
    trainer = Trainer(cfg)
    trainer.run()
    assert any(c.keywords for c in trainer.data.val_controls)
    history = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    val = [r for r in history if "val_perplexity" in r]
    assert val and all("val_perplexity_theme" in r for r in val)
    model = TangPoemLSTM.from_pretrained(out / "best")
    assert model.config.control and model.tokenizer.tokens[-len(CONTROL_TOKENS) :] == list(CONTROL_TOKENS)

    capsys.readouterr()
    args = ["generate", "--model", str(out / "best"), "--form", "5", "--seed", "3", "--json"]
    assert main([*args, "--title", "山行", "--keywords", "白云 明月"]) == 0
    poem = json.loads(capsys.readouterr().out)
    assert "白云" in poem["text"] and "明月" in poem["text"] and len(poem["lines"]) == 4

    rows = tmp_path / "poems.jsonl"
    row = {"text": TEXTS[7], "title": "山行", "keywords": ["白云", "石径"]}
    rows.write_text(json.dumps(row, ensure_ascii=False) + "\n")
    bare = tmp_path / "bare.jsonl"
    bare.write_text(json.dumps({"text": TEXTS[7]}, ensure_ascii=False) + "\n")
    assert main(["perplexity", str(rows), "--model", str(out / "best")]) == 0
    themed = capsys.readouterr().out
    assert main(["perplexity", str(bare), "--model", str(out / "best")]) == 0
    assert themed != capsys.readouterr().out  # the title and keywords were read
    # A theme character the model lacks: that one poem is scored bare, the others with their theme,
    # and one warning counts them.
    lacking = {"text": TEXTS[3], "title": "龘山", "keywords": "白云 齉"}
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in (row, lacking, lacking)) + "\n")
    assert main(["perplexity", str(mixed), "--model", str(out / "best")]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("note:") == 1
    assert (
        "2 poem(s) scored without their title and keywords" in captured.err
        and "齉龘" in captured.err
        and "(poem 2, 3)" in captured.err
    )
    themed_controls = [Control("山行", ("白云", "石径")), Control(), Control()]
    expected = perplexity(model, [TEXTS[7], TEXTS[3], TEXTS[3]], controls=themed_controls)
    assert captured.out.strip().splitlines()[-1] == f"perplexity: {expected:.3f}"


def test_perplexity_notes_that_a_model_without_controls_ignores_the_theme(tiny_model_dir, tmp_path, capsys):
    rows = tmp_path / "poems.jsonl"
    rows.write_text(json.dumps({"text": TEXTS[0], "title": "登鹳雀楼"}, ensure_ascii=False) + "\n")
    assert main(["perplexity", str(rows), "--model", str(tiny_model_dir)]) == 0
    assert "titles and keywords are ignored" in capsys.readouterr().err


def test_character_perplexity_reads_a_control_model_its_form_first():
    from tangpoem_hf.scoring import char_losses

    model, old = control_model(), make_tiny_model()
    total, count = char_losses(model, TEXTS[:4])
    assert count == char_losses(old, TEXTS[:4])[1]  # the same characters are scored
    # …each after the poem's control segment, as the model reads it in training and generation
    ids = control_ids(model.tokenizer, "五绝") + model.tokenizer.encode("白日依山尽", add_eos=False)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids[:-1]])).logits[0], dim=-1)
    start = len(control_ids(model.tokenizer, "五绝"))
    expected = -sum(float(logp[start + j - 1, ids[start + j]]) for j in range(1, 5))
    first_line = char_losses(model, ["白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"], cut=5)
    assert first_line[1] == 4 and first_line[0] == pytest.approx(expected, abs=1e-4)


def test_packed_epochs_keep_their_size_whatever_is_dropped():
    poems = controlled(drop_title=0.5, drop_keywords=0.9)
    stream = StreamBatches(poems, batch_size=2, seq_len=8, seed=0)
    lengths = {sum(map(len, poems.epoch(e))) for e in range(6)}
    assert min(lengths) < poems.expected_total  # some epochs are shorter than the size they are read at
    for epoch in range(6):  # a short epoch wraps around to its start instead of failing
        for step in range(stream.steps_per_epoch):
            x, y = stream.get(epoch, step)
            assert x.shape == y.shape == (2, 8)


def test_a_title_is_taken_as_people_type_it():
    """Spaces, punctuation and other scripts are dropped; a long title is cut to what the model reads, with one note."""
    from tangpoem_hf.control import MAX_TITLE

    model = control_model()
    plain = generate_poem(model, form=5, title="白日依山尽", seed=3, temperature=2.0)
    typed = generate_poem(model, form=5, title=" 白日 依山，尽 (No.1)! ", seed=3, temperature=2.0)
    assert typed.text == plain.text and typed.notes == plain.notes == []
    long_title = "白日依山尽黄河入海流欲穷千里目更上一层楼"  # 20 characters
    cut = generate_poem(model, form=5, title=long_title, seed=3, temperature=2.0)
    assert cut.text == generate_poem(model, form=5, title=long_title[:MAX_TITLE], seed=3, temperature=2.0).text
    assert cut.notes == [f"The title was cut to its first {MAX_TITLE} characters ({long_title[:MAX_TITLE]}): "
                         "the model reads no more."]  # fmt: skip
    with pytest.raises(InputError, match="title holds no Chinese characters"):
        generate_poem(model, form=5, title="Hello")
