"""Every poem starts in the state the model was trained in: the start state, the split, scoring.

The bug this guards against: a model trained on packed streams was scored and sampled from the
all-zero LSTM state, which it had almost never seen at <bos>; held-out figures were 25–40% worse.
"""

from __future__ import annotations

import json
import math
import random
from collections import deque

import numpy as np
import pytest
import torch
from conftest import full_corpus, make_tiny_model, needs_corpus

from tangpoem_hf import TangPoemLSTM
from tangpoem_hf.batching import encode_poems
from tangpoem_hf.cli import main
from tangpoem_hf.corpus import assign_splits, build_splits, split_of
from tangpoem_hf.decoding import generate_poem, generate_poems, stream_poem
from tangpoem_hf.errors import InputError, ModelFileError
from tangpoem_hf.evaluation import evaluate_model
from tangpoem_hf.modeling import TangPoemConfig, mean_start_state
from tangpoem_hf.numpy_lstm import NumpyLSTM
from tangpoem_hf.request import read_scoring_file
from tangpoem_hf.scoring import char_perplexity, perplexity
from tangpoem_hf.serving import PoemServer
from tangpoem_hf.text import punctuate, split_lines
from tangpoem_hf.train_config import TrainConfig
from tangpoem_hf.training import Trainer

POEM = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"


def stored_model(seed: int = 0, **config) -> TangPoemLSTM:
    """A tiny model whose stored start state is far from zeros, so starting from zeros shows."""
    model = make_tiny_model(seed=seed, **config)
    gen = torch.Generator().manual_seed(seed + 1)
    shape = (model.config.num_layers, model.config.hidden_size)
    model.set_start_state(torch.randn(shape, generator=gen).tanh(), 3 * torch.randn(shape, generator=gen))
    return model


# --- the model's start state -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["stored", "learned"])
def test_forward_without_state_starts_from_the_start_state(kind):
    if kind == "stored":
        model = stored_model(num_layers=2)
    else:
        model = make_tiny_model(num_layers=2, start_state="learned")
        with torch.no_grad():
            model.start_h.normal_()
            model.start_c.normal_()
    ids = torch.tensor([model.tokenizer.encode(POEM, add_bos=True)] * 3)
    default = model(ids).logits
    explicit = model(ids, state=model.initial_state(3)).logits
    zeros = torch.zeros(2, 3, model.config.hidden_size)
    assert torch.equal(default, explicit)
    assert not torch.allclose(default, model(ids, state=(zeros, zeros)).logits, atol=1e-3)
    short = model(ids[:, :4]).logits  # the per-token decoding kernel takes the same start
    assert torch.allclose(short, explicit[:, :4], atol=1e-5)


def test_learned_start_state_is_trained_and_stored_is_not():
    learned = make_tiny_model(start_state="learned")
    stored = stored_model()
    assert {n for n, _ in learned.named_parameters()} >= {"start_h", "start_c"}
    assert not {n for n, _ in stored.named_parameters()} & {"start_h", "start_c"}
    with pytest.raises(ModelFileError, match="learns its start state"):
        learned.set_start_state(torch.zeros(1, 24), torch.zeros(1, 24))
    with pytest.raises(ModelFileError, match="start_state"):
        TangPoemConfig(start_state="random")


def test_start_state_round_trips_and_old_folders_still_load(tmp_path):
    model = stored_model()
    model.save_pretrained(tmp_path / "new")
    assert json.loads((tmp_path / "new" / "config.json").read_text())["start_state"] == "stored"
    loaded = TangPoemLSTM.from_pretrained(tmp_path / "new")
    assert torch.equal(loaded.start_h, model.start_h) and torch.equal(loaded.start_c, model.start_c)
    old = make_tiny_model()
    old.save_pretrained(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    del config["start_state"]  # a folder written before the start state existed
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    assert TangPoemLSTM.from_pretrained(tmp_path / "old").initial_state(2) is None


def test_mean_start_state_is_the_mean_state_after_each_poem():
    model = make_tiny_model(num_layers=2)
    texts = [POEM, "床前明月光，疑是地上霜。", "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。", "山。"] * 3
    poems = encode_poems(texts, model.tokenizer, "ours")
    h, c = mean_start_state(model, poems, streams=4)
    # By hand: four streams, each reading its poems one after another, state carried.
    hs, cs = [], []
    for s in range(4):
        state = None
        for poem in poems[s::4]:
            _, state = model.lstm(model.embed(torch.as_tensor(poem))[None], state)
            hs.append(state[0][:, 0])
            cs.append(state[1][:, 0])
    assert torch.allclose(h, torch.stack(hs).mean(0), atol=1e-6)
    assert torch.allclose(c, torch.stack(cs).mean(0), atol=1e-6)


# --- perplexity, computed by hand ----------------------------------------------------------------


def _hand_perplexity(model: TangPoemLSTM, texts: list[str]) -> float:
    """exp(mean NLL per real token), with the LSTM cell written out in NumPy from the start state."""
    sd = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
    H = model.config.hidden_size
    total, count = 0.0, 0
    for text in texts:
        ids = model.tokenizer.encode("".join(text.split()), add_bos=True, add_eos=True)
        h, c = sd["start_h"][0].copy(), sd["start_c"][0].copy()
        for cur, nxt in zip(ids[:-1], ids[1:]):
            z = sd["lstm.weight_ih_l0"] @ sd["embed.weight"][cur] + sd["lstm.bias_ih_l0"]
            z += sd["lstm.weight_hh_l0"] @ h + sd["lstm.bias_hh_l0"]
            i, f, g, o = (z[k * H : (k + 1) * H] for k in range(4))
            sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
            c = sig(f) * c + sig(i) * np.tanh(g)
            h = sig(o) * np.tanh(c)
            logits = sd["head.weight"] @ h + sd["head.bias"]
            log_z = logits.max() + math.log(np.exp(logits - logits.max()).sum())
            total += log_z - logits[nxt]
            count += 1
    return math.exp(total / count)


def test_perplexity_equals_a_hand_computed_value():
    model = stored_model()
    texts = [POEM, "床前明月光，\n疑是地上霜。", "春眠不觉晓，处处闻啼鸟。"]
    assert perplexity(model, texts) == pytest.approx(_hand_perplexity(model, texts), rel=1e-6)  # float32
    # A generated poem's text has a line break between couplets: layout, not a token.
    assert perplexity(model, ["白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼。"]) == pytest.approx(
        perplexity(model, [POEM]), rel=1e-9
    )


# --- no entry point starts a poem from zeros ----------------------------------------------------


@pytest.fixture
def start_spy(monkeypatch):
    """Record every forward pass that starts a poem (reads <bos> without training labels: a training
    chunk of a packed stream may begin at <bos> with the carried state, by design), and its state."""
    calls: list[tuple[TangPoemLSTM, torch.Tensor | None]] = []
    original = TangPoemLSTM.forward

    def spy(self, input_ids, labels=None, state=None):
        starts = self.tokenizer is not None and bool((input_ids[:, 0] == self.tokenizer.bos_id).any())
        if starts and labels is None:
            calls.append((self, None if state is None else state[0].detach().clone()))
        return original(self, input_ids, labels=labels, state=state)

    monkeypatch.setattr(TangPoemLSTM, "forward", spy)
    return calls


def _assert_started_from_the_start_state(calls, model) -> None:
    assert calls, "no poem was started"
    for owner, h in calls:
        if h is None:
            continue  # forward(state=None) starts from the start state (tested above)
        expected = owner.start_h.unsqueeze(1).expand_as(h)
        assert torch.equal(h, expected), "a poem was started from a state other than the model's start state"


ENTRY_POINTS = {
    "generate_poem": lambda m: generate_poem(m, first="山", form=5, lines=4, seed=0),
    "generate_poems": lambda m: generate_poems(m, num=3, form=7, lines=2, seed=0),
    "stream_poem": lambda m: deque(stream_poem(m, acrostic="春山", form=5, seed=1), maxlen=1),
    "keywords": lambda m: generate_poem(m, first="月", form=5, lines=2, seed=2, keywords="白日"),
    "perplexity": lambda m: perplexity(m, [POEM]),
    "char_perplexity": lambda m: char_perplexity(m, [POEM]),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_no_entry_point_starts_a_poem_from_zeros(entry, start_spy):
    model = stored_model()
    ENTRY_POINTS[entry](model)
    _assert_started_from_the_start_state(start_spy, model)


def test_the_server_starts_poems_from_the_start_state(start_spy):
    model = stored_model()
    server = PoemServer(model)
    try:
        served = deque(server.stream(first="山", form=5, lines=4, seed=7), maxlen=1)[0]
    finally:
        server.close()
    _assert_started_from_the_start_state(start_spy, model)
    assert served.text == generate_poem(model, first="山", form=5, lines=4, seed=7).text


def test_evaluate_scores_from_the_start_state(start_spy, small_corpus):
    from tangpoem_hf.evaluation import build_reference

    model = stored_model()
    evaluate_model(model, num=4, forms=["五绝"], seed=0, reference=build_reference(str(small_corpus)))
    _assert_started_from_the_start_state(start_spy, model)


def test_training_validates_from_the_stored_start_state(small_corpus, tmp_path, start_spy):
    cfg = TrainConfig(
        corpus=str(small_corpus), out_dir=str(tmp_path / "run"), embedding_dim=8, hidden_size=8,
        batch_size=4, seq_len=8, max_steps=4, progress=False,
    )  # fmt: skip
    trainer = Trainer(cfg)
    summary = trainer.run()
    _assert_started_from_the_start_state(start_spy, trainer.model)
    best = TangPoemLSTM.from_pretrained(tmp_path / "run" / "best")
    assert best.config.start_state == "stored" and bool(best.start_c.abs().sum() > 0)
    splits, _ = build_splits(str(small_corpus))
    assert perplexity(best, splits["validation"]["text"]) == pytest.approx(summary["best_val_perplexity"], rel=1e-5)
    info = json.loads((tmp_path / "run" / "best" / "training.json").read_text())
    assert info["split"] == "copies-together"


def test_learned_start_state_trains_one_poem_per_row(small_corpus, tmp_path):
    cfg = TrainConfig(
        corpus=str(small_corpus), out_dir=str(tmp_path / "run"), embedding_dim=8, hidden_size=8,
        batch_size=4, seq_len=16, max_steps=3, lr=0.05, start_state="learned", progress=False,
    )  # fmt: skip
    trainer = Trainer(cfg)
    before = trainer.model.start_h.detach().clone() if hasattr(trainer, "model") else None
    assert before is None
    trainer.prepare()
    start = trainer.model.start_h.detach().clone()
    assert not trainer.batches.carry_state
    trainer.run()
    assert not torch.equal(trainer.model.start_h, start)  # it is a parameter and gets gradients


def test_numpy_mirror_takes_the_start_state():
    model = stored_model(num_layers=2)
    mirror = NumpyLSTM.from_torch(model, dtype=np.float64)
    ids = np.array([model.tokenizer.encode(POEM, add_bos=True)])
    logits, _ = mirror.forward(ids)
    expected = model(torch.from_numpy(ids)).logits.detach().double().numpy()
    assert np.abs(logits - expected).max() < 1e-5
    back = mirror.to_torch()
    assert torch.equal(back.start_h, model.start_h) and back.config.start_state == "stored"


# --- the split keeps copies together -------------------------------------------------------------


def test_copies_share_a_split_and_single_poems_keep_their_own():
    texts = [
        POEM,
        "白日依山尽，黄河入海流。欲穷千里眼，更上一重楼。",
        "床前明月光，疑是地上霜。",
        "春眠不觉晓，处处闻啼鸟。",
    ]
    texts += ["处处闻啼鸟，夜来风雨声。"]  # shares a line with the poem before it: joined transitively
    ids = ["p-3", "p-1", "p-7", "p-2", "p-9"]
    splits = assign_splits(ids, texts)
    assert splits[0] == splits[1] == split_of("p-1")  # the group takes its smallest id's split
    assert splits[3] == splits[4] == split_of("p-2")
    assert splits[2] == split_of("p-7")
    order = list(range(len(ids)))
    random.Random(0).shuffle(order)
    shuffled = assign_splits([ids[i] for i in order], [texts[i] for i in order])
    assert [shuffled[order.index(i)] for i in range(len(ids))] == splits


def test_a_copy_is_never_held_out(small_corpus):
    splits, _ = build_splits(str(small_corpus))
    train_lines = {line for t in splits["train"]["text"] for line in split_lines(t)}
    for name in ("validation", "test"):
        assert len(splits[name]) > 0
        assert not any(train_lines.intersection(split_lines(t)) for t in splits[name]["text"])


@needs_corpus
@pytest.mark.corpus
def test_no_held_out_poem_shares_a_line_with_training_on_the_full_corpus():
    splits, _ = build_splits(full_corpus())
    train_lines = {line for t in splits["train"]["text"] for line in split_lines(t)}
    for name in ("validation", "test"):
        shared = [t for t in splits[name]["text"] if train_lines.intersection(split_lines(t))]
        assert not shared, f"{len(shared)} {name} poems share a line with training poems, e.g. {shared[0]}"
        assert 900 < len(splits[name]) < 1400


# --- tangpoem perplexity as a user runs it -------------------------------------------------------


def test_bare_poems_are_cut_by_length():
    assert punctuate("床前明月光疑是地上霜举头望明月低头思故乡") == "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
    assert punctuate("一" * 56).count("。") == 4 and punctuate("一" * 40).count("，") == 4


def test_perplexity_command_scores_poems_with_or_without_punctuation(tmp_path, capsys):
    model = stored_model()
    model.save_pretrained(tmp_path / "model")
    quatrains = ["白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", "床前明月光，疑是地上霜。举头望明月，低头思故乡。"]
    (tmp_path / "with.txt").write_text("\n".join(quatrains), encoding="utf-8")
    bare = [q.replace("，", "").replace("。", "") for q in quatrains]
    (tmp_path / "bare.txt").write_text("\n".join(bare), encoding="utf-8")
    rows = [json.dumps({"text": b, "title": "题"}, ensure_ascii=False) for b in bare]
    (tmp_path / "poems.jsonl").write_text("\n".join(rows), encoding="utf-8")
    figures = []
    for name in ("with.txt", "bare.txt", "poems.jsonl"):
        assert main(["perplexity", str(tmp_path / name), "--model", str(tmp_path / "model")]) == 0
        figures.append(float(capsys.readouterr().out.split("perplexity:")[1]))
    assert figures[1] == pytest.approx(figures[0], rel=0.05) and figures[2] == figures[1]
    assert figures[0] == pytest.approx(perplexity(model, quatrains), rel=1e-3)
    assert read_scoring_file(tmp_path / "poems.jsonl", True)[0]["title"] == "题"  # other fields are kept


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ("白日依山尽，黄河入海流。\n床前明月光疑是地上霜举头望明月低头思故\n", ".txt", "line 2 has 19 characters"),
        ('{"poem": "白日依山尽"}\n', ".jsonl", "line 1 is not a JSON object with a text field"),
        ("\n\n", ".txt", "holds no poems"),
    ],
)
def test_perplexity_command_names_the_bad_line(tmp_path, capsys, content, suffix, message):
    path = tmp_path / f"poems{suffix}"
    path.write_text(content, encoding="utf-8")
    assert main(["perplexity", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    with pytest.raises(InputError):
        read_scoring_file(path, True)


def test_check_reads_a_bare_poem_like_perplexity(capsys):
    assert main(["check", "白日依山尽黄河入海流欲穷千里目更上一层楼"]) in (0, 1)
    out = capsys.readouterr().out
    assert "五绝" in out and "4 lines of 5 characters" in out
