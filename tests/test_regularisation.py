"""AWD-LSTM regularisation: each regulariser does what it says in training and nothing at evaluation;
the averaged weights validate, save and resume; a base model learns to read a control segment."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import make_tiny_model, poem_records, write_corpus
from test_training import tiny_config

from tangpoem_hf import TangPoemLSTM
from tangpoem_hf.averaging import WeightAverage
from tangpoem_hf.control import CONTROL_TOKENS
from tangpoem_hf.corpus import LEGACY_SPLIT, SPLIT_VERSION, build_splits, never_trained_on
from tangpoem_hf.decoding import generate_poem
from tangpoem_hf.errors import CorpusError, InputError
from tangpoem_hf.finetune import FinetuneOptions, base_split_version, finetune
from tangpoem_hf.modeling import TangPoemConfig, locked_dropout
from tangpoem_hf.numpy_lstm import NumpyLSTM
from tangpoem_hf.train_config import TrainConfig
from tangpoem_hf.training import Trainer

AWD = {"weight_drop": 0.5, "embed_drop": 0.2, "locked_dropout": True, "dropout": 0.3}


def awd_model(seed: int = 0, **config) -> TangPoemLSTM:
    torch.manual_seed(seed)
    return TangPoemLSTM(TangPoemConfig(vocab_size=40, embedding_dim=12, hidden_size=12, num_layers=2, **config))


def test_layer_by_layer_lstm_is_the_fused_lstm_without_dropout():
    model = awd_model()
    x = model.embed(torch.randint(1, 40, (3, 9)))
    state = (torch.randn(2, 3, 12), torch.randn(2, 3, 12))
    ref, (h, c) = model.lstm(x, state)
    out, (h2, c2) = model._lstm_layers(x, state)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(h2, h, rtol=0, atol=1e-6)
    torch.testing.assert_close(c2, c, rtol=0, atol=1e-6)


def test_regularisers_change_training_only():
    """Evaluation logits depend on the weights alone; in training the same weights give noisy outputs."""
    plain, awd = awd_model(), awd_model(**AWD)
    awd.load_state_dict(plain.state_dict())
    ids = torch.randint(1, 40, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(awd.eval()(ids).logits, plain.eval()(ids).logits, rtol=0, atol=0)
        awd.train()
        assert not torch.allclose(awd(ids).logits, plain(ids).logits)


def test_weight_drop_masks_the_hidden_to_hidden_weights_only():
    """From the zero state, the first step never reads W_hh: DropConnect on it leaves that step
    exact and changes the later ones (dropping W_ih would change the first step too)."""
    model = awd_model(weight_drop=0.5)
    ids = torch.randint(1, 40, (4, 6))
    zeros = (torch.zeros(2, 4, 12), torch.zeros(2, 4, 12))
    with torch.no_grad():
        clean = model.eval()(ids, state=zeros).hidden
        noisy = model.train()(ids, state=zeros).hidden
    torch.testing.assert_close(noisy[:, 0], clean[:, 0], rtol=0, atol=1e-6)
    assert not torch.allclose(noisy[:, 1:], clean[:, 1:])
    model(ids, labels=ids).loss.backward()
    assert model.lstm.weight_hh_l0.grad.abs().sum() > 0


def test_locked_dropout_shares_one_mask_across_time():
    torch.manual_seed(0)
    out = locked_dropout(torch.ones(5, 11, 8), 0.5, training=True)
    assert torch.equal(out, out[:, :1].expand_as(out))  # every step of a sequence has its mask
    assert set(out.unique().tolist()) == {0.0, 2.0}  # dropped, or kept and scaled by 1 / (1 - p)
    assert not torch.equal(out[0], out[1])  # sequences differ
    assert torch.equal(locked_dropout(torch.ones(2, 3, 4), 0.5, training=False), torch.ones(2, 3, 4))


def test_embedding_dropout_drops_whole_characters():
    model = awd_model(embed_drop=0.5).train()
    ids = torch.tensor([[5, 5, 5, 7, 7, 7]])
    rows = model._embed(ids)[0]
    full = model.embed.weight
    for i, char in enumerate(ids[0].tolist()):
        scale = rows[i] / full[char]
        assert torch.allclose(scale, scale[0]) and scale[0].item() in (pytest.approx(0.0), pytest.approx(2.0))
    assert torch.equal(rows[0], rows[1]) and torch.equal(rows[3], rows[5])  # one decision per character


def test_numpy_mirror_gives_the_same_logits_for_a_regularised_model():
    tmodel = awd_model(**AWD).eval()
    ids = np.random.default_rng(0).integers(1, 40, (3, 10))
    logits, _ = NumpyLSTM.from_torch(tmodel).forward(ids)
    with torch.no_grad():
        np.testing.assert_allclose(logits, tmodel(torch.from_numpy(ids)).logits.numpy(), rtol=1e-5, atol=1e-5)
    assert NumpyLSTM.from_torch(tmodel).to_torch().config == tmodel.config


def test_weight_average_is_an_exponential_moving_average_and_swaps_back():
    model = awd_model()
    start = model.embed.weight.detach().clone()
    avg = WeightAverage(model, decay=0.9)
    expected = start.clone()
    for n in range(1, 6):
        with torch.no_grad():
            model.embed.weight.add_(1.0)
        avg.update(model)
        d = min(0.9, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * model.embed.weight.detach()
    torch.testing.assert_close(avg.shadow["embed.weight"], expected)
    raw = model.embed.weight.detach().clone()
    with avg.applied(model):
        torch.testing.assert_close(model.embed.weight.detach(), expected)
    assert torch.equal(model.embed.weight.detach(), raw)
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, decay=1.0)


def test_a_run_with_an_average_saves_it_and_resumes_bit_exactly(small_corpus, tmp_path):
    kw = dict(average=0.9, ar=1.0, tar=1.0, weight_drop=0.3, locked_dropout=True, dropout=0.2, embed_drop=0.1)
    full = Trainer(tiny_config(small_corpus, tmp_path / "full", max_steps=8, epochs=50, **kw))
    full.run()
    part = Trainer(tiny_config(small_corpus, tmp_path / "part", max_steps=5, epochs=50, checkpoint_every=5, **kw))
    part.run()
    resumed = Trainer(tiny_config(small_corpus, tmp_path / "part", max_steps=8, epochs=50, **kw))
    resumed.run(resume=True)
    for name, a in full.model.state_dict().items():
        assert torch.equal(a, resumed.model.state_dict()[name]), name
    for name, a in full.average.shadow.items():
        assert torch.equal(a, resumed.average.shadow[name]), name
    # One validation, at the last step: best/ holds the averaged weights, and the log has both figures.
    saved = TangPoemLSTM.from_pretrained(tmp_path / "full" / "best").state_dict()
    for name, a in full.average.shadow.items():
        torch.testing.assert_close(saved[name], a, rtol=0, atol=0)
    val = [json.loads(r) for r in (tmp_path / "full" / "train_log.jsonl").read_text().splitlines()][-1]
    assert {"val_perplexity", "val_perplexity_raw"} <= set(val) and val["val_perplexity"] != val["val_perplexity_raw"]


def test_ar_tar_shape_the_gradient_but_not_the_logged_loss(small_corpus, tmp_path):
    plain = Trainer(tiny_config(small_corpus, tmp_path / "p", max_steps=1))
    plain.run()
    penalised = Trainer(tiny_config(small_corpus, tmp_path / "ar", max_steps=1, ar=50.0, tar=50.0))
    penalised.run()
    logs = [json.loads((tmp_path / d / "train_log.jsonl").read_text().splitlines()[0]) for d in ("p", "ar")]
    assert logs[0]["loss"] == logs[1]["loss"]  # the same batch and weights: the logged loss is the CE alone
    assert not torch.equal(plain.model.lstm.weight_hh_l0, penalised.model.lstm.weight_hh_l0)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [("weight_drop", 1.0, "--weight-drop must lie in"), ("average", -0.1, "--average must lie in"),
     ("ar", -1.0, "--ar must not be negative")],
)  # fmt: skip
def test_bad_regularisation_is_refused_in_one_sentence(field, value, fragment):
    with pytest.raises(InputError, match=fragment):
        TrainConfig(**{field: value})


def test_a_continued_model_takes_the_runs_regularisation_when_it_sets_one():
    base = TangPoemConfig(vocab_size=50, embedding_dim=8, hidden_size=8, num_layers=2, dropout=0.3)
    kept = TrainConfig().with_model(base)
    assert (kept.dropout, kept.weight_drop, kept.locked_dropout) == (0.3, 0.0, False)
    changed = TrainConfig(weight_drop=0.5, locked_dropout=True).with_model(base)
    assert (changed.dropout, changed.weight_drop, changed.locked_dropout) == (0.3, 0.5, True)


def test_add_control_teaches_a_base_to_read_a_control_segment(tmp_path):
    base = make_tiny_model()
    base.save_pretrained(tmp_path / "base")
    corpus = write_corpus(tmp_path / "corpus", poem_records())
    cfg = TrainConfig(corpus=str(corpus), out_dir=str(tmp_path / "run"), batch_size=2, seq_len=16, max_steps=3,
                      epochs=3, progress=False, lr=0.01, weight_drop=0.3)  # fmt: skip
    finetune(cfg, FinetuneOptions(init_from=str(tmp_path / "base"), add_control=True))
    model = TangPoemLSTM.from_pretrained(tmp_path / "run" / "best")
    assert model.config.control and model.config.weight_drop == 0.3
    assert model.tokenizer.tokens[: len(base.tokenizer)] == base.tokenizer.tokens  # no id moved
    assert model.tokenizer.tokens[-len(CONTROL_TOKENS) :] == list(CONTROL_TOKENS)
    poem = generate_poem(model, first="山", form=5, lines=4, seed=0, title="明月")
    assert len(poem.lines) == 4
    info = json.loads((tmp_path / "run" / "best" / "training.json").read_text())
    assert info["split"] == SPLIT_VERSION  # the tiny base has no training.json: it read no Tang split


def test_a_base_trained_on_the_legacy_split_is_validated_on_poems_it_never_read(tmp_path):
    base = make_tiny_model()
    base.save_pretrained(tmp_path / "base")
    (tmp_path / "base" / "training.json").write_text(json.dumps({"split": LEGACY_SPLIT}))
    assert base_split_version(str(tmp_path / "base")) == LEGACY_SPLIT
    corpus = write_corpus(tmp_path / "corpus", poem_records())
    cfg = TrainConfig(corpus=str(corpus), out_dir=str(tmp_path / "run"), batch_size=2, seq_len=16, max_steps=2,
                      epochs=2, progress=False, lr=0.01)  # fmt: skip
    finetune(cfg, FinetuneOptions(init_from=str(tmp_path / "base")))
    info = json.loads((tmp_path / "run" / "best" / "training.json").read_text())
    assert info["split"] == f"{LEGACY_SPLIT}+{SPLIT_VERSION}"
    splits, _ = build_splits(str(corpus))
    joined = never_trained_on(splits, "test", info["split"])
    assert joined == never_trained_on(splits, "test", LEGACY_SPLIT)
    # Continuing that model again adds no second copy of today's split.
    cfg2 = TrainConfig(corpus=str(corpus), out_dir=str(tmp_path / "run2"), batch_size=2, seq_len=16, max_steps=1,
                       epochs=1, progress=False, lr=0.01)  # fmt: skip
    finetune(cfg2, FinetuneOptions(init_from=str(tmp_path / "run" / "best")))
    assert json.loads((tmp_path / "run2" / "best" / "training.json").read_text())["split"] == info["split"]
    with pytest.raises(CorpusError, match="Unknown split version"):
        never_trained_on(splits, "test", "poem-id+by-moon")
    assert math.isfinite(info["val_perplexity"])
