"""Training on Tang + Song (issue 21): the Tang weight, the vocabulary, Song's validation slice, a warm
start from a Tang model, and the compact tokenised corpus (tangpoem data pack) that reads the same."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import poem_records, write_corpus
from test_corpus import song_records, write_song

import tangpoem_hf.control as control
import tangpoem_hf.corpus as corpus
from tangpoem_hf.cli import main
from tangpoem_hf.corpus import build_splits, pack_corpus
from tangpoem_hf.errors import CorpusError
from tangpoem_hf.finetune import FinetuneOptions, finetune
from tangpoem_hf.packed import PACKED_ARRAYS
from tangpoem_hf.train_config import TrainConfig
from tangpoem_hf.training import Trainer


@pytest.fixture
def tang_song(tmp_path):
    return write_song(write_corpus(tmp_path / "ts", poem_records()), song_records())


def tiny(corpus_dir, out, **kw) -> TrainConfig:
    base = dict(corpus=str(corpus_dir), out_dir=str(out), embedding_dim=8, hidden_size=8, batch_size=4, seq_len=8,
                max_steps=4, checkpoint_every=2, progress=False, lr=0.01, dynasties="tang,song")  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_tang_weight_repeats_tang_poems_and_song_validation_is_logged(tang_song, tmp_path):
    splits, _ = build_splits(tang_song, dynasties="tang,song")
    tang = sum(d == "tang" for d in splits["train"]["dynasty"])
    song = len(splits["train"]) - tang
    trainer = Trainer(tiny(tang_song, tmp_path / "run", tang_weight=3))
    trainer.prepare()
    assert len(trainer.batches.poems) == 3 * tang + song
    assert trainer.data.monitored == {"song_validation": list(splits["song_validation"]["text"])}
    trainer.run()
    last = trainer.history[-1]
    assert {"val_perplexity", "val_perplexity_theme", "song_validation_perplexity"} <= set(last)
    saved = json.loads((tmp_path / "run" / "best" / "training.json").read_text())
    assert saved["val_perplexity"] == min(h["val_perplexity"] for h in trainer.history)  # Tang selects


def test_tang_ids_never_move_when_song_is_read(tang_song, tmp_path):
    tang_only = Trainer(tiny(tang_song, tmp_path / "tang", dynasties="tang"))
    tang_only.prepare()
    both = Trainer(tiny(tang_song, tmp_path / "both"))
    both.prepare()
    old, new = tang_only.tokenizer.tokens, both.tokenizer.tokens
    assert new[: len(old)] == old and len(new) > len(old)
    assert "曈" in new[len(old) :] and "曈" not in old  # 元日's, a Song-only character, appended


def test_a_resume_refuses_other_dynasties(tang_song, tmp_path):
    Trainer(tiny(tang_song, tmp_path / "run", max_steps=2)).run()
    with pytest.raises(Exception, match="--dynasties"):
        Trainer(tiny(tang_song, tmp_path / "run", dynasties="tang")).run(resume=True)


def test_warm_start_grows_the_vocabulary_with_song_characters(tang_song, tmp_path, tiny_model_dir):
    cfg = tiny(tang_song, tmp_path / "ft", tang_weight=2, epochs=1)
    summary = finetune(cfg, FinetuneOptions(init_from=str(tiny_model_dir)))
    assert summary["new_characters"] > 0
    tokens = json.loads((tmp_path / "ft" / "vocab.json").read_text())["tokens"]
    base = json.loads((tiny_model_dir / "vocab.json").read_text())["tokens"]
    assert tokens[: len(base)] == base and "曈" in tokens[len(base) :]


# --- the compact tokenised corpus -------------------------------------------------------------------


def test_a_pack_gives_back_the_splits_of_the_folder(tang_song, tmp_path):
    done = pack_corpus(tang_song, tmp_path / "packed", "tang,song")
    with np.load(tmp_path / "packed" / PACKED_ARRAYS) as arrays:
        assert arrays["train.text"].dtype == np.uint16
    for dynasties in ("tang,song", "tang"):
        folder, _ = build_splits(tang_song, dynasties=dynasties)
        packed, report = build_splits(tmp_path / "packed", dynasties=dynasties)
        assert list(packed) == list(folder)
        for name in folder:
            assert packed[name].to_dict() == folder[name].to_dict(), name
    assert report.left_out == {} and done["splits"]["song_validation"] == 2
    with pytest.raises(CorpusError, match="traditional|simplified"):
        build_splits(tmp_path / "packed", simplified=False)


def test_training_reads_the_same_tokens_from_a_pack(tang_song, tmp_path, monkeypatch):
    from_folder = Trainer(tiny(tang_song, tmp_path / "a", tang_weight=2))
    from_folder.prepare()
    pack_corpus(tang_song, tmp_path / "packed", "tang,song")
    # A machine without the corpus: an empty cache, and keywords must come from the pack.
    monkeypatch.setattr(corpus, "_CACHE", tmp_path / "empty-cache")
    monkeypatch.setattr(control, "extract_keywords", lambda *a, **k: pytest.fail("keywords re-extracted"))
    from_pack = Trainer(tiny(tmp_path / "packed", tmp_path / "b", tang_weight=2))
    from_pack.prepare()
    assert from_pack.tokenizer.tokens == from_folder.tokenizer.tokens
    assert from_pack.data.val_texts == from_folder.data.val_texts
    assert from_pack.data.val_controls == from_folder.data.val_controls
    assert from_pack.data.monitored == from_folder.data.monitored
    assert from_pack.batches.steps_per_epoch == from_folder.batches.steps_per_epoch
    for epoch in (0, 1):
        for step in range(from_folder.batches.steps_per_epoch):
            for a, b in zip(from_folder.batches.get(epoch, step), from_pack.batches.get(epoch, step)):
                assert torch.equal(a, b)


def test_pack_command_then_train_from_it(tang_song, tmp_path, capsys):
    assert main(["data", "pack", "--corpus", str(tang_song), "--dynasties", "tang,song", "--out",
                 str(tmp_path / "p")]) == 0  # fmt: skip
    assert "train from it with --corpus" in capsys.readouterr().out
    args = ["train", "--corpus", str(tmp_path / "p"), "--dynasties", "tang,song", "--tang-weight", "2", "--out-dir",
            str(tmp_path / "run"), "--embedding-dim", "8", "--hidden-size", "8", "--batch-size", "4", "--seq-len",
            "8", "--max-steps", "2", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert saved["dynasties"] == "tang,song" and saved["tang_weight"] == 2
    assert main(["data", "pack", "--corpus", str(tang_song), "--dynasties", "song", "--out", str(tmp_path / "q")]) == 2
