import json
import math
import os
from pathlib import Path

import pytest
import safetensors.torch
import torch
from conftest import write_corpus

from tangpoem_hf import TangPoemLSTM
from tangpoem_hf.checkpointing import load_latest, save_checkpoint
from tangpoem_hf.decoding import generate_poem
from tangpoem_hf.errors import InputError
from tangpoem_hf.plotting import read_log
from tangpoem_hf.train_config import TrainConfig, default_lr
from tangpoem_hf.training import Trainer


def tiny_config(corpus, out, **kw) -> TrainConfig:
    base = dict(
        corpus=str(corpus),
        out_dir=str(out),
        embedding_dim=16,
        hidden_size=32,
        batch_size=4,
        seq_len=16,
        epochs=2,
        checkpoint_every=5,
        progress=False,
        lr=0.01,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_end_to_end_train_save_load_generate(small_corpus, tmp_path):
    out = tmp_path / "run"
    summary = Trainer(tiny_config(small_corpus, out)).run()
    assert summary["steps"] > 5 and math.isfinite(summary["best_val_perplexity"])
    for name in ("vocab.json", "train_log.jsonl", "curves.png", "best/model.safetensors", "best/config.json"):
        assert (out / name).exists(), name
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert {"epoch", "step", "loss", "perplexity", "tokens_per_s"} <= set(steps[0])
    assert steps[-1]["loss"] < steps[0]["loss"]
    model = TangPoemLSTM.from_pretrained(out / "best")
    poem = generate_poem(model, first="山", form=5, lines=4, seed=0)
    assert len(poem.lines) == 4 and all(len(line) == 5 for line in poem.lines)


def test_vocabulary_is_reused_not_rebuilt(small_corpus, tmp_path):
    """A resume keeps the run's vocab.json even when the corpus has grown new characters since."""
    out = tmp_path / "run"
    Trainer(tiny_config(small_corpus, out, max_steps=2)).run()
    first = (out / "vocab.json").read_text()
    extra = [{"id": "new-1", "author": "某", "title": "新", "paragraphs": ["龜蛇鶴鹿麟，鳳凰鸞鵲鷗。"] * 4}]
    write_corpus(small_corpus / "more", extra * 3)
    resumed = Trainer(tiny_config(small_corpus, out, max_steps=4))
    resumed.run(resume=True)
    assert (out / "vocab.json").read_text() == first
    assert "龟" not in resumed.tokenizer and len(resumed.tokenizer) == resumed.model.config.vocab_size


def test_resume_is_bit_exact(small_corpus, tmp_path):
    full = Trainer(tiny_config(small_corpus, tmp_path / "full", max_steps=12))
    full.run()
    part = Trainer(tiny_config(small_corpus, tmp_path / "part", max_steps=7, checkpoint_every=7))
    part.run()
    resumed = Trainer(tiny_config(small_corpus, tmp_path / "part", max_steps=12))
    resumed.run(resume=True)
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_report_mode_trains_on_padded_poems(small_corpus, tmp_path):
    trainer = Trainer(tiny_config(small_corpus, tmp_path / "r", mode="report", max_steps=3))
    trainer.run()
    assert "，" not in trainer.tokenizer and trainer.model.config.preprocessing == "report"
    x, _ = trainer.batches.get(0, 0)
    assert x.shape[1] == 99
    model = TangPoemLSTM.from_pretrained(tmp_path / "r" / "best")
    assert len(generate_poem(model, first="山", form=5, seed=0).lines) == 4


def test_default_rate_follows_the_global_batch():
    assert default_lr("adam", 64) == 2e-3 and default_lr("adagrad", 64) == 0.05
    assert default_lr("adam", 256) == pytest.approx(4e-3)  # square root for the adaptive optimisers
    assert default_lr("sgd", 128) == pytest.approx(2.0)  # linear for SGD
    cfg = TrainConfig(batch_size=128)
    assert cfg.resolved_lr(world=1) == pytest.approx(2e-3 * 2**0.5)
    assert cfg.resolved_lr(world=8) == pytest.approx(2e-3 * 4)  # 8 ranks × 128 rows = 1024
    assert TrainConfig(batch_size=1024, lr=1e-3).resolved_lr(world=8) == 1e-3  # an explicit --lr is kept


def test_trainer_uses_the_scaled_rate_and_warms_up(small_corpus, tmp_path):
    out = tmp_path / "w"
    trainer = Trainer(tiny_config(small_corpus, out, lr=None, batch_size=16, warmup_steps=4, max_steps=6))
    trainer.run()
    base = 2e-3 * 0.5  # adam's default, batch 16 = a quarter of 64
    lrs = [r["lr"] for r in read_log(out / "train_log.jsonl")[0]]
    assert lrs == pytest.approx([base / 4, base / 2, 3 * base / 4, base, base, base])
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(base)


def test_adagrad_and_cosine(small_corpus, tmp_path):
    out = tmp_path / "a"
    trainer = Trainer(tiny_config(small_corpus, out, optimizer="adagrad", lr_schedule="cosine", max_steps=4))
    trainer.run()
    assert isinstance(trainer.optimizer, torch.optim.Adagrad)
    # lr_t = lr · (1 + cos(π t / T)) / 2 over the run's T = 4 steps
    lrs = [r["lr"] for r in read_log(out / "train_log.jsonl")[0]]
    assert lrs == pytest.approx([0.01 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(4)])


def test_existing_run_needs_resume(small_corpus, tmp_path):
    Trainer(tiny_config(small_corpus, tmp_path / "x", max_steps=5)).run()
    with pytest.raises(InputError, match="--resume"):
        Trainer(tiny_config(small_corpus, tmp_path / "x", max_steps=6)).run()


def test_checkpoints_are_atomic_and_pruned(tmp_path):
    ckpt = tmp_path / "ck"
    for step in (1, 2, 3):
        save_checkpoint(ckpt, step, {"w": torch.full((2,), float(step))}, {"step": step}, keep=2)
    assert sorted(p.name for p in ckpt.iterdir()) == ["latest.json", "step-2", "step-3"]
    tensors, meta = load_latest(ckpt)
    assert meta["step"] == 3 and tensors["w"][0] == 3


def test_a_save_killed_before_its_rename_leaves_the_last_checkpoint_in_use(tmp_path, monkeypatch):
    """The new checkpoint becomes visible (folder, then latest.json) only once it is complete."""
    ckpt = tmp_path / "ck"
    save_checkpoint(ckpt, 3, {"w": torch.full((2,), 3.0)}, {"step": 3}, keep=2)
    real_replace = os.replace

    def killed_at_the_rename(src, dst):
        if Path(src).name.startswith(".step-4"):
            raise KeyboardInterrupt  # the process dies between writing step 4 and renaming it
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed_at_the_rename)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(ckpt, 4, {"w": torch.full((2,), 4.0)}, {"step": 4}, keep=2)
    monkeypatch.setattr(os, "replace", real_replace)
    tensors, meta = load_latest(ckpt)
    assert meta["step"] == 3 and torch.equal(tensors["w"], torch.full((2,), 3.0))
    assert sorted(p.name for p in ckpt.iterdir() if not p.name.startswith(".")) == ["latest.json", "step-3"]
    save_checkpoint(ckpt, 5, {"w": torch.full((2,), 5.0)}, {"step": 5}, keep=2)  # the next save tidies up
    assert sorted(p.name for p in ckpt.iterdir()) == ["latest.json", "step-3", "step-5"]


def test_push_to_hub_every_epoch_and_at_the_end(small_corpus, tmp_path):
    from test_hub import RecordingHfApi

    from tangpoem_hf.hub import PushToHubCallback

    api = RecordingHfApi(tmp_path / "hub")
    cfg = tiny_config(small_corpus, tmp_path / "p", epochs=2)
    trainer = Trainer(cfg, callbacks=[PushToHubCallback("alice/tang", api=api, every_epoch=True)])
    summary = trainer.run()
    assert summary["pushed_to"] == "alice/tang"
    messages = [u["commit_message"] for u in api.uploads]
    assert messages[:2] == ["Epoch 1", "Epoch 2"] and messages[2].startswith("Best model")
    final = api.uploads[-1]
    assert {"config.json", "model.safetensors", "vocab.json", "README.md"} <= set(final["files"])
    assert "library_name: tangpoem" in (final["copy"] / "README.md").read_text()
    model = TangPoemLSTM.from_pretrained(final["copy"])
    assert len(generate_poem(model, first="山", form=5, seed=0).lines) == 4


def test_a_crash_during_a_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    ckpt = tmp_path / "ck"
    save_checkpoint(ckpt, 1, {"w": torch.ones(2)}, {"step": 1}, keep=2)

    def dying_save(tensors, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise OSError("killed mid-write")

    monkeypatch.setattr(safetensors.torch, "save_file", dying_save)
    with pytest.raises(OSError):
        save_checkpoint(ckpt, 2, {"w": torch.zeros(2)}, {"step": 2}, keep=2)
    tensors, meta = load_latest(ckpt)
    assert meta["step"] == 1 and torch.equal(tensors["w"], torch.ones(2))
    assert not (ckpt / "step-2").exists()


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("lr_schedule", "cosin", "--lr-schedule must be constant or cosine"),
        ("start_state", "zero", "--start-state must be stored or learned"),
        ("lr", -1e-3, "--lr must not be negative"),
        ("max_steps", 0, "--max-steps must be positive"),
        ("seq_len", 0, "--seq-len must be at least 1"),
        ("drop_title", 1.5, "--drop-title must lie in"),
        ("keyword_min_count", 0, "--keyword-min-count must be at least 1"),
    ],
)
def test_train_config_refuses_a_bad_value_in_one_sentence(field, value, fragment):
    """Validated once, where a TrainConfig is made: the API, the CLI and a resumed config alike."""
    with pytest.raises(InputError, match=fragment) as info:
        TrainConfig(**{field: value})
    assert str(info.value).endswith(".") and "\n" not in str(info.value)


def test_the_model_config_comes_from_the_run_config_in_one_place():
    from tangpoem_hf.modeling import TangPoemConfig
    from tangpoem_hf.train_config import ARCHITECTURE

    assert {"embedding_dim", "hidden_size", "num_layers", "dropout", "tie_weights", "softmax"} <= set(ARCHITECTURE)
    cfg = TrainConfig(embedding_dim=24, hidden_size=24, num_layers=2, dropout=0.1, tie_weights=True)
    model = cfg.model_config(vocab_size=50, pad_token_id=0)
    assert all(getattr(model, name) == getattr(cfg, name) for name in ARCHITECTURE)
    back = TrainConfig().with_model(TangPoemConfig(vocab_size=50, embedding_dim=8, hidden_size=8, num_layers=3))
    assert (back.embedding_dim, back.hidden_size, back.num_layers) == (8, 8, 3)


def test_a_portable_copy_is_small_and_resumes_the_run_elsewhere(small_corpus, tmp_path):
    """The copy a lent machine leaves behind: weights in fp16, no optimiser or average; the resume
    continues the same steps and log, with the rate warmed up again from zero."""
    from tangpoem_hf.training import REWARM_STEPS, keep_portable

    out = tmp_path / "run"
    cfg = dict(max_steps=7, checkpoint_every=7, average=0.9)
    Trainer(tiny_config(small_corpus, out, **cfg)).run()
    assert keep_portable(out, tmp_path / "kept") == 7
    full_size = sum(f.stat().st_size for f in (out / "checkpoints").rglob("*.safetensors"))
    kept_size = sum(f.stat().st_size for f in (tmp_path / "kept" / "checkpoints").rglob("*.safetensors"))
    assert kept_size < full_size / 4
    tensors, meta = load_latest(tmp_path / "kept" / "checkpoints")
    assert meta["optimizer"] is None and meta["rewarm_from"] == 7
    assert not any(n.startswith(("opt.", "avg.")) for n in tensors)
    assert tensors["model.embed.weight"].dtype == torch.float16
    for name in ("train_config.json", "train_log.jsonl", "vocab.json"):
        assert (tmp_path / "kept" / name).read_bytes() == (out / name).read_bytes()

    resumed = Trainer(tiny_config(small_corpus, tmp_path / "kept", **{**cfg, "max_steps": 12}))
    resumed.run(resume=True)
    steps = read_log(tmp_path / "kept" / "train_log.jsonl")[0]
    assert [r["step"] for r in steps] == list(range(1, 13))
    lrs = [r["lr"] for r in steps]
    assert lrs[:7] == pytest.approx([0.01] * 7)
    assert lrs[7:] == pytest.approx([0.01 * (t + 1) / REWARM_STEPS for t in range(5)])
    kept_weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    assert not torch.equal(resumed.model.embed.weight, kept_weights["embed.weight"].float())  # it trained on
    with pytest.raises(InputError, match="no checkpoint to keep"):
        keep_portable(tmp_path / "empty", tmp_path / "nowhere")


def test_a_copy_kept_with_its_optimizer_goes_on_with_the_step_sizes_it_had(small_corpus, tmp_path):
    """Adagrad's accumulated squares are its step sizes: a copy kept with them (in bf16) continues
    almost exactly as the run would have, where a plain portable copy restarts them and drifts. The
    average is a copy of the weights and is kept as they are, in fp16."""
    from tangpoem_hf.training import keep_portable

    cfg = dict(optimizer="adagrad", lr=0.05, checkpoint_every=7, average=0.9)
    Trainer(tiny_config(small_corpus, tmp_path / "whole", max_steps=12, **cfg)).run()
    whole = [r["loss"] for r in read_log(tmp_path / "whole" / "train_log.jsonl")[0]]
    Trainer(tiny_config(small_corpus, tmp_path / "run", max_steps=7, **cfg)).run()

    def resumed_losses(name: str, optimizer: bool) -> tuple[list[float], dict, dict]:
        assert keep_portable(tmp_path / "run", tmp_path / name, optimizer=optimizer) == 7
        tensors, meta = load_latest(tmp_path / name / "checkpoints")
        Trainer(tiny_config(small_corpus, tmp_path / name, max_steps=12, **cfg)).run(resume=True)
        steps = read_log(tmp_path / name / "train_log.jsonl")[0]
        return [r["loss"] for r in steps], tensors, meta

    kept, tensors, meta = resumed_losses("kept", optimizer=True)
    assert meta["optimizer"] is not None and meta["rewarm_from"] is None and meta["kept_rounded"] == 7
    assert {t.dtype for n, t in tensors.items() if n.startswith("opt.") and t.dim()} == {torch.bfloat16}
    assert {t.dtype for n, t in tensors.items() if n.startswith("avg.") and t.dim()} == {torch.float16}
    lrs = [r["lr"] for r in read_log(tmp_path / "kept" / "train_log.jsonl")[0]]
    assert lrs == pytest.approx([0.05] * 12)  # no rewarm: the state it needs is there
    plain = resumed_losses("plain", optimizer=False)[0]
    assert kept[:7] == whole[:7] == plain[:7]
    kept_gap = max(abs(a - b) for a, b in zip(kept[7:], whole[7:]))
    plain_gap = max(abs(a - b) for a, b in zip(plain[7:], whole[7:]))
    assert kept_gap < 0.01 and kept_gap < plain_gap / 10, (kept_gap, plain_gap)


def test_keep_run_script_says_what_it_kept_or_why_not(small_corpus, tmp_path):
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "scripts" / "keep_run.py"
    Trainer(tiny_config(small_corpus, tmp_path / "run", max_steps=5)).run()
    done = subprocess.run([sys.executable, script, tmp_path / "run", tmp_path / "kept"], capture_output=True, text=True)
    assert done.returncode == 0 and "kept step 5" in done.stdout
    assert load_latest(tmp_path / "kept" / "checkpoints")[1]["step"] == 5
    empty = subprocess.run([sys.executable, script, tmp_path / "none", tmp_path / "k2"], capture_output=True, text=True)
    assert empty.returncode == 2 and empty.stderr.count("\n") == 1 and "no checkpoint to keep" in empty.stderr
