"""Training speed (issue 6): the comparable character perplexity, the adaptive softmax, and the
benchmark script end to end on tiny data (the experiments: experiments/tests/)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch
from conftest import bias_model

from tangpoem_hf import CharTokenizer, TangPoemConfig, TangPoemLSTM
from tangpoem_hf.corpus import build_splits
from tangpoem_hf.decoding import generate_poem
from tangpoem_hf.errors import InputError, ModelFileError
from tangpoem_hf.modeling import adaptive_nll
from tangpoem_hf.scoring import char_losses, char_perplexity, perplexity
from tangpoem_hf.train_config import TrainConfig, resolve_bf16
from tangpoem_hf.training import Trainer

ROOT = Path(__file__).resolve().parents[1]
POEM = "白日依山尽，黄河入海流。"
SCORED = "日依山尽黄河入海流"  # Han characters 2..100: what the report's model predicts


def _script(relative: str):
    spec = importlib.util.spec_from_file_location(Path(relative).stem, ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("preprocessing", ["ours", "report"])
def test_char_perplexity_scores_han_characters_two_to_hundred(preprocessing):
    model, logp = bias_model(preprocessing, [POEM])
    tok = model.tokenizer
    total, count = char_losses(model, [POEM])
    expected = -sum(float(logp[tok.index[ch]]) for ch in SCORED)
    assert count == len(SCORED) == 9
    assert total == pytest.approx(expected, rel=1e-5)
    assert char_perplexity(model, [POEM]) == pytest.approx(math.exp(expected / 9), rel=1e-5)
    # cut: only characters 2..5 count
    total, count = char_losses(model, [POEM], cut=5)
    assert count == 4 and total == pytest.approx(-sum(float(logp[tok.index[ch]]) for ch in "日依山尽"), rel=1e-5)


def test_char_perplexity_folds_punctuation_into_the_next_character():
    model, logp = bias_model("ours", [POEM])
    tok = model.tokenizer
    total, count = char_losses(model, [POEM], fold_skipped=True)
    # the ， before 黄 lands on 黄; the final 。 and <eos> precede no scored character
    expected = -sum(float(logp[tok.index[ch]]) for ch in SCORED) - float(logp[tok.index["，"]])
    assert count == 9 and total == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("preprocessing", ["ours", "report"])
def test_char_perplexity_stops_at_the_reports_cut(preprocessing):
    han = "山水花月风云天地人江" * 12  # 120 characters
    long_poem = "，".join(han[i : i + 5] for i in range(0, 120, 5)) + "。"
    model, _ = bias_model(preprocessing, [long_poem, POEM])
    assert char_losses(model, [long_poem])[1] == 99
    assert char_losses(model, [long_poem, POEM, "山。"])[1] == 99 + 9  # one Han character: nothing to score


def test_adaptive_nll_matches_torch_and_log_probs_are_normalised():
    torch.manual_seed(0)
    asm = torch.nn.AdaptiveLogSoftmaxWithLoss(8, 30, [6, 15], div_value=2.0)
    hidden, target = torch.randn(50, 8), torch.randint(0, 30, (50,))
    assert torch.allclose(adaptive_nll(asm, hidden, target).mean(), asm(hidden, target).loss, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # torch's own forward fails here
        assert adaptive_nll(asm, hidden, target).dtype == torch.float32


def test_adaptive_config_is_checked():
    with pytest.raises(ModelFileError, match="tie_weights"):
        TangPoemConfig(vocab_size=100, embedding_dim=8, hidden_size=8, tie_weights=True, softmax="adaptive")
    with pytest.raises(ModelFileError, match="full"):
        TangPoemConfig(vocab_size=100, preprocessing="report", softmax="adaptive")
    with pytest.raises(ModelFileError, match="cutoffs"):
        TangPoemConfig(vocab_size=100, softmax="adaptive", cutoffs=[50, 20])
    with pytest.raises(ModelFileError, match="softmax"):
        TangPoemConfig(softmax="sampled")
    assert TangPoemConfig(vocab_size=8000, softmax="adaptive").cutoffs == [2000, 4000]


def test_adaptive_softmax_trains_saves_loads_and_generates(small_corpus, tmp_path):
    splits, _ = build_splits(str(small_corpus))
    tok = CharTokenizer.build(splits["train"]["text"])
    torch.manual_seed(0)
    model = TangPoemLSTM(TangPoemConfig(vocab_size=len(tok), embedding_dim=16, hidden_size=24, softmax="adaptive"))
    model.tokenizer = tok
    cfg = TrainConfig(
        corpus=str(small_corpus),
        out_dir=str(tmp_path / "run"),
        batch_size=4,
        seq_len=16,
        epochs=2,
        lr=0.01,
        bf16=True,
        progress=False,
    )
    trainer = Trainer(cfg, base_model=model)
    summary = trainer.run()
    steps = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in steps if "loss" in r]
    assert losses[-1] < losses[0] and math.isfinite(summary["best_val_perplexity"])
    loaded = TangPoemLSTM.from_pretrained(tmp_path / "run" / "best")
    assert loaded.config.softmax == "adaptive" and loaded.config.cutoffs == model.config.cutoffs
    ids = torch.tensor([tok.encode("白日依山", add_bos=True)])
    logp = loaded(ids).logits
    assert logp.shape == (1, 5, len(tok)) and torch.allclose(logp.exp().sum(-1), torch.ones(1, 5), atol=1e-5)
    trainer.model.save_pretrained(tmp_path / "last")  # best/ may be an earlier step: compare a fresh save
    reloaded = TangPoemLSTM.from_pretrained(tmp_path / "last")
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, reloaded.state_dict()[key]), key
    val = list(splits["validation"]["text"])
    assert math.isfinite(perplexity(loaded, val)) and math.isfinite(char_perplexity(loaded, val))
    poem = generate_poem(loaded, first="山", form=5, lines=4, seed=0)
    assert len(poem.lines) == 4 and all(len(line) == 5 for line in poem.lines)


def without_bf16_units(monkeypatch) -> None:
    """This CPU as torch would see one without AVX512-BF16 or AMX (the project's usual machines)."""
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": False, "amx_bf16": False})


@pytest.mark.parametrize(
    ("caps", "expected"),
    [({"avx512_bf16": True, "amx_bf16": False}, True), ({"amx_bf16": True}, True), ({"avx512_bf16": False}, False)],
)
def test_bf16_auto_is_on_only_where_the_cpu_runs_bf16_in_hardware(monkeypatch, caps, expected):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps)
    cpu = torch.device("cpu")
    assert resolve_bf16("auto", cpu) is expected
    assert resolve_bf16(True, cpu) is True and resolve_bf16(False, cpu) is False  # forced either way


def test_bf16_auto_is_on_for_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert resolve_bf16("auto", torch.device("cuda")) is True


def test_a_run_follows_and_records_the_resolved_bf16(small_corpus, tmp_path, monkeypatch):
    without_bf16_units(monkeypatch)
    enabled = []
    autocast = torch.autocast

    def spy(device_type, *args, **kwargs):
        enabled.append(kwargs.get("enabled"))
        return autocast(device_type, *args, **kwargs)

    monkeypatch.setattr(torch, "autocast", spy)
    out = tmp_path / "run"
    cfg = TrainConfig(corpus=str(small_corpus), out_dir=str(out), embedding_dim=8, hidden_size=8, batch_size=4,
                      seq_len=8, max_steps=2, progress=False)  # fmt: skip
    assert cfg.bf16 == "auto"
    Trainer(cfg).run()
    assert enabled and not any(enabled)
    assert json.loads((out / "train_config.json").read_text())["bf16_resolved"] is False
    assert json.loads((out / "best" / "training.json").read_text())["bf16_resolved"] is False
    assert Trainer(TrainConfig(out_dir=str(tmp_path / "forced"), bf16=True)).bf16 is True


def test_old_run_folders_with_a_boolean_bf16_still_load():
    assert TrainConfig(bf16=True).bf16 is True and TrainConfig(bf16=False).bf16 is False
    with pytest.raises(InputError, match="bf16 must be auto, true or false"):
        TrainConfig(bf16="yes")


def test_train_throughput_end_to_end(small_corpus, tmp_path, capsys, monkeypatch):
    """With its defaults, on a CPU without bf16 units, the benchmark runs ours in fp32 and says so."""
    without_bf16_units(monkeypatch)
    script = _script("benchmarks/train_throughput.py")
    out = tmp_path / "bench.json"
    args = ["--corpus", str(small_corpus), "--seconds", "1", "--slice", "0.5", "--embedding-dim", "8"]
    args += ["--hidden-size", "8", "--batch-size", "4", "--seq-len", "8", "--report-batch-size", "4"]
    assert script.main(args + ["--json", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("speedup: ") and float(lines[-1].split()[1]) > 0
    assert "native bf16 here: no; --bf16 auto" in lines and any("fp32 output" in line for line in lines)
    result = json.loads(out.read_text())
    assert result["bf16_resolved"] is False
    for name in ("report", "ours"):
        row = result["results"][name]
        assert row["train_seconds"] >= 1 and row["tokens_per_s"] > 0
        assert math.isfinite(row["char_val_perplexity"]) and math.isfinite(row["own_val_perplexity"])


def test_train_command_takes_the_adaptive_softmax(small_corpus, tmp_path, capsys):
    from conftest import tiny_train_args

    from tangpoem_hf import TangPoemLSTM
    from tangpoem_hf.cli import main

    out = tmp_path / "adaptive-run"
    args = [*tiny_train_args(small_corpus, out), "--softmax", "adaptive"]
    assert main(args) == 0
    assert TangPoemLSTM.from_pretrained(out / "best").config.softmax == "adaptive"


def test_numpy_lstm_refuses_an_adaptive_model():
    import pytest

    from tangpoem_hf import ModelFileError, NumpyLSTM, TangPoemConfig

    with pytest.raises(ModelFileError, match="adaptive"):
        NumpyLSTM(TangPoemConfig(vocab_size=50, embedding_dim=8, hidden_size=8, softmax="adaptive", cutoffs=[10]))
