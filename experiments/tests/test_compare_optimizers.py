"""Issue 17: the report's padded perplexity, the step-size log, and the Adam-against-Adagrad
experiment end to end on tiny data (resume after an interruption, side-by-side runs, the document)."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
from compare_optimizers import padded_perplexity
from conftest import bias_model

from tangpoem_hf.train_config import TrainConfig
from tangpoem_hf.training import Trainer

ROOT = Path(__file__).resolve().parents[2]
LONG, SHORT = "白日依山尽，黄河入海流。", "春眠。"


def _script():
    import compare_optimizers

    return compare_optimizers


def test_padded_perplexity_counts_every_slot_padding_too():
    model, logp = bias_model("report", [LONG, SHORT])
    tok = model.tokenizer
    lp = {ch: float(logp[tok.index[ch]]) for ch in "日依山尽眠"}
    pad = float(logp[tok.pad_id])
    # length 5: 白日依山|尽 predicts 日依山尽 (cut, no padding); 春眠___ predicts 眠 and three pads
    by_hand = -(lp["日"] + lp["依"] + lp["山"] + lp["尽"] + lp["眠"] + 3 * pad) / 8
    assert padded_perplexity(model, [LONG, SHORT], length=5) == pytest.approx(math.exp(by_hand), rel=1e-5)
    # the report's 100 slots: 99 targets a row, the nine characters after the first and 90 pads
    chars = -sum(float(logp[tok.index[ch]]) for ch in "日依山尽黄河入海流")
    assert padded_perplexity(model, [LONG]) == pytest.approx(math.exp((chars - 90 * pad) / 99), rel=1e-5)


def test_padded_perplexity_is_the_report_mode_training_loss(small_corpus, tmp_path):
    """What the trainer logs in report mode (before its first update) is the same number."""
    from tangpoem_hf.corpus import build_splits

    splits, _ = build_splits(small_corpus)
    texts = list(splits["train"]["text"])
    cfg = TrainConfig(  # fp32, as padded_perplexity computes (bf16 "auto" is on where the CPU has bf16 units)
        out_dir=str(tmp_path / "run"),
        mode="report",
        embedding_dim=8,
        hidden_size=8,
        batch_size=len(texts),
        max_steps=1,
        bf16=False,
    )
    trainer = Trainer(cfg)
    trainer.prepare(splits)
    before = padded_perplexity(trainer.model, texts)
    trainer.run()
    first = json.loads((tmp_path / "run" / "train_log.jsonl").read_text().splitlines()[0])
    assert first["step"] == 1 and first["loss"] == pytest.approx(math.log(before), abs=2e-5)


def test_padded_perplexity_refuses_a_packed_model():
    model, _ = bias_model("ours", [LONG])
    with pytest.raises(ValueError, match="report"):
        padded_perplexity(model, [LONG])


@pytest.mark.parametrize("name", ["adam", "adagrad"])
def test_step_sizes_describe_the_step_just_taken(name):
    """The logged update RMS is the RMS of the actual parameter change; Adagrad's rate is lr/√Σg²."""
    from tangpoem_hf.training import make_optimizer

    step_sizes = _script().step_sizes
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.zeros(40)), torch.nn.Parameter(torch.zeros(5, 6))]
    opt = make_optimizer(name, params, lr=0.1, weight_decay=0.0)
    grads = []
    for _ in range(2):
        before = [p.detach().clone() for p in params]
        for p in params:
            p.grad = torch.randn_like(p)
        params[0].grad[:10] = 0  # never updated: left out of the rates
        grads.append([p.grad.clone() for p in params])
        opt.step()
        sizes = step_sizes(opt)
        change = torch.cat([(p.detach() - b).flatten() for p, b in zip(params, before)])
        assert sizes["update_rms"] == pytest.approx(float(change.square().mean().sqrt()), rel=1e-3)
        assert sizes["rate_p10"] < sizes["rate_p50"] < sizes["rate_p90"]
    if name == "adagrad":
        sums = torch.cat([sum(g[i] ** 2 for g in grads).flatten() for i in range(2)])
        rate = 0.1 / sums[sums > 0].sqrt()
        assert sizes["rate_p50"] == pytest.approx(float(rate.double().quantile(0.5)), rel=1e-3)


TINY = ["--embedding-dim", "8", "--hidden-size", "8", "--batch-size", "4", "--seq-len", "8", "--stats-every", "5"]
TINY += ["--epochs", "2", "--lrs-adam", "0.01", "0.05", "--lrs-adagrad", "0.1", "0.3", "--no-progress"]
SECTIONS = ("## Learning rates", "## Perplexity per epoch", "## Who wins, and why", "## The report's preprocessing")


def _args(corpus: Path, folder: Path) -> list[str]:
    out = ["--out-dir", str(folder / "runs"), "--doc", str(folder / "optimizers.md"), "--png", str(folder / "o.png")]
    return ["--corpus", str(corpus), *TINY, *out]


def _records(folder: Path, run: str) -> list[dict]:
    return [json.loads(line) for line in (folder / "runs" / run / "train_log.jsonl").read_text().splitlines()]


def _vals(folder: Path, run: str) -> list[dict]:
    """Validation records at the ends of epochs, without the clock (an interrupted run also validates
    where it stopped)."""
    vals = [r for r in _records(folder, run) if "val_perplexity" in r and r["step"] % r["steps_per_epoch"] == 0]
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in vals]


def _checks(folder: Path, opt: str) -> list[Path]:
    return sorted((folder / "runs").glob(f"check-{opt}-lr*"))


@pytest.mark.parametrize(
    ("perplexities", "beyond"),
    [
        ({1e-3: 177.2, 2e-3: 143.7, 4e-3: 136.2}, 8e-3),  # best at the top: go higher
        ({0.025: 150.0, 0.05: 160.0, 0.1: 170.0}, 0.0125),  # best at the bottom: go lower
        ({1e-3: 177.2, 2e-3: 130.0, 4e-3: 136.2}, None),  # best inside the grid: done
        ({1e-3: 177.2}, None),  # one rate has no edge to pass
    ],
)
def test_the_rate_check_goes_past_a_best_rate_at_the_grid_edge(perplexities, beyond):
    assert _script().beyond_edge(perplexities) == beyond


def test_experiment_end_to_end_resumes_after_an_interruption(small_corpus, tmp_path, capsys, monkeypatch):
    script = _script()
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert script.main(_args(small_corpus, whole)) == 0

    doc = (whole / "optimizers.md").read_text()
    assert all(s in doc for s in SECTIONS) and "## Reproduce" in doc and "--corpus" not in doc
    assert "TANGPOEM_CORPUS=DIR python experiments/compare_optimizers.py --embedding-dim 8" in doc
    assert "| 58 |" in doc and "| 43 |" in doc and "| 2 |" in doc  # the report's figures; epoch 2 in the tables
    assert (whole / "o.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((whole / "runs" / "results.json").read_text())
    for opt, grid in (("adam", {0.01, 0.05}), ("adagrad", {0.1, 0.3})):  # the grid, widened past a best edge
        checks = {
            float(f.name.split("-lr")[1]): _vals(whole, f.name)[-1]["val_perplexity"] for f in _checks(whole, opt)
        }
        assert grid <= set(checks) and results["chosen"][opt] == min(checks, key=checks.get)
        widened = sorted(set(checks) - grid)
        steps = range(1, len(widened) + 1)
        assert widened in (
            pytest.approx([max(grid) * 2**k for k in steps]),
            pytest.approx([min(grid) / 2**k for k in steps][::-1]),
        )
        assert len(widened) <= 2 and (results["chosen"][opt] not in (min(checks), max(checks)) or len(widened) == 2)
    main = _vals(whole, "main-adam")  # continues the chosen check run: its first epoch is that run
    check = f"check-adam-lr{results['chosen']['adam']:g}"
    assert [v["epoch"] for v in main] == [1, 2] and main[:1] == _vals(whole, check)
    clock = [r["elapsed_s"] for r in _records(whole, check)]
    assert [r["elapsed_s"] for r in _records(whole, "main-adam")][: len(clock)] == clock  # copied, not retrained
    assert all(math.isfinite(v["test_perplexity"]) and "padded_train_perplexity" not in v for v in main)
    report = _vals(whole, "report-adagrad")
    assert report and all(math.isfinite(v["padded_train_perplexity"]) for v in report)
    assert [r["step"] for r in _records(whole, "main-adagrad") if "update_rms" in r][:3] == [1, 5, 10]

    # A new machine without runs/: the check's figures choose the same rates and fill the same table,
    # no check is trained again, and the main runs come out as they did.
    figures = whole / "runs" / "rate_check.json"
    assert {float(lr) for lr in json.loads(figures.read_text())["adam"]} == {
        float(f.name.split("-lr")[1]) for f in _checks(whole, "adam")
    }
    fresh = tmp_path / "fresh"
    assert script.main([*_args(small_corpus, fresh), "--rate-check", str(figures)]) == 0
    assert not (fresh / "runs" / "rate_check.json").exists() and not _checks(fresh, "adam")
    assert json.loads((fresh / "runs" / "results.json").read_text())["chosen"] == results["chosen"]
    fresh_doc = (fresh / "optimizers.md").read_text()

    def rate_rows(text: str) -> list[str]:
        section = text.split("## Learning rates")[1].split("## Perplexity per epoch")[0]
        return [line for line in section.splitlines() if line.startswith(("| adam", "| adagrad"))]

    assert rate_rows(fresh_doc) == rate_rows(doc) and "given" not in "".join(rate_rows(fresh_doc))
    assert f"its figures come from `{figures}`" in fresh_doc
    assert _vals(fresh, "main-adam") == _vals(whole, "main-adam")
    (tmp_path / "bad.json").write_text('{"adam": 3}')
    assert script.main([*_args(small_corpus, fresh), "--rate-check", str(tmp_path / "bad.json")]) == 2
    assert "is not a rate check's rate_check.json" in capsys.readouterr().err

    # The same experiment, killed in the middle of adagrad's second epoch, then rerun.
    add_figures = script.StudyTrainer.add_figures

    def interrupt(self, record):
        add_figures(self, record)
        if self.name == "main-adagrad" and record.get("step") == 60 and "loss" in record:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(script.StudyTrainer, "add_figures", interrupt)
    assert script.main(_args(small_corpus, cut)) == 130
    assert "Interrupted" in capsys.readouterr().out and not (cut / "optimizers.md").exists()
    monkeypatch.setattr(script.StudyTrainer, "add_figures", add_figures)
    assert script.main(_args(small_corpus, cut)) == 0
    out = capsys.readouterr().out
    checks = len(_checks(whole, "adam")) + len(_checks(whole, "adagrad"))
    assert out.count("finished earlier") == checks + 1  # the checks and main-adam are not trained again
    assert "Resumed from step 60." in out
    for run in ("main-adam", "main-adagrad"):  # bit-exact: as if it had never stopped
        assert _vals(cut, run) == _vals(whole, run)

    # A rerun with another model into the same folders is refused, not mixed in.
    assert script.main([*_args(small_corpus, cut), "--hidden-size", "16"]) == 2
    assert "hidden_size" in capsys.readouterr().err


def test_side_by_side_runs_stop_cleanly_when_killed_and_continue(small_corpus, tmp_path, monkeypatch):
    """--jobs 2 trains in worker processes, one thread each; a kill of the command reaches both, each
    checkpoints, and the rerun continues them to the numbers the runs get one after the other."""
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))  # spawned workers import the script by name
    script = _script()
    rates = ["--lr-adam", "0.01", "--lr-adagrad", "0.1"]
    assert script.main([*_args(small_corpus, tmp_path / "one"), *rates, "--epochs", "1"]) == 0
    args = [*_args(small_corpus, tmp_path / "two"), *rates, "--jobs", "2"]
    runs = [tmp_path / "two" / "runs" / f"main-{name}" for name in ("adam", "adagrad")]

    def kill_once_both_train() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            logs = [run / "train_log.jsonl" for run in runs]
            if all(log.exists() and len(log.read_text().splitlines()) >= 20 for log in logs):
                break
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=kill_once_both_train, daemon=True).start()
    assert script.main([*args, "--epochs", "100"]) == 130  # far more steps than the kill leaves them
    for run in runs:
        assert (run / "checkpoints" / "latest.json").exists() and not (run / "summary.json").exists()
        assert json.loads((run / "train_config.json").read_text())["threads"] == 1
    assert script.main([*args, "--epochs", "1"]) == 0  # shorter: each run continues at least to the end of epoch 1
    for run in runs:  # one run may have trained past epoch 1 before the kill reached it: compare epoch 1
        assert _vals(tmp_path / "two", run.name)[:1] == _vals(tmp_path / "one", run.name)
    assert "given (--lr-adam)" in (tmp_path / "two" / "optimizers.md").read_text()
