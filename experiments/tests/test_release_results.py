"""experiments/release_results.py end to end on a small made-up corpus: three arms side by side, the
release model below them, the table in its own section of the results page; a killed run resumes."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import tiny_train_args

from tangpoem_hf.checkpointing import has_checkpoint, load_latest

ROOT = Path(__file__).resolve().parents[2]
TINY = "--embedding-dim 8 --hidden-size 8 --batch-size 4 --seq-len 8"
PAGE = "# Results\n\nprose before\n\n{section}\n\n## Later\n\nprose after\n"


@pytest.fixture
def release(small_corpus, tmp_path) -> Path:
    """A tiny release model (with the control segment, as the app's) in a folder of its own."""
    from tangpoem_hf.cli import main

    assert main([*tiny_train_args(small_corpus, tmp_path / "release-run"), "--min-freq", "2"]) == 0
    return Path(shutil.copytree(tmp_path / "release-run" / "best", tmp_path / "release"))


def results_page(tmp_path: Path) -> Path:
    import release_results as script

    doc = tmp_path / "docs" / "results.md"
    doc.parent.mkdir()
    doc.write_text(PAGE.format(section=f"{script.MARK_START}\nnot yet run\n{script.MARK_END}"), encoding="utf-8")
    return doc


def test_three_arms_side_by_side_and_the_release_below_them(small_corpus, release, tmp_path, monkeypatch):
    """Each arm runs its own recipe for the same budget; the table replaces its section and nothing else."""
    monkeypatch.setenv("TANGPOEM_CACHE", str(tmp_path / "cache"))  # the arms run in their own processes
    import release_results as script

    doc, runs = results_page(tmp_path), tmp_path / "runs"
    args = ["--runs", str(runs), "--budget", "60", "--corpus", str(small_corpus), "--doc", str(doc)]
    args += ["--release-model", str(release), "--release", str(tmp_path / "release-run")]
    args += ["--extra-train-args", f"{TINY} --max-steps 3 --eval-every 1"]
    assert script.main(args) == 0

    configs = {name: json.loads((runs / name / "train_config.json").read_text()) for name in script.ARMS}
    models = {name: json.loads((runs / name / "best" / "config.json").read_text()) for name in script.ARMS}
    assert configs["report"]["optimizer"] == "adagrad" and models["report"]["num_layers"] == 1
    assert configs["pytorch-book"]["lr"] == 1e-3 and models["pytorch-book"]["num_layers"] == 2
    ours = configs["ours"]
    assert (ours["lr_schedule"], ours["warmup_steps"], ours["average"], ours["epochs"]) == ("cosine", 200, 0.998, 1)
    assert models["ours"]["tie_weights"] and models["ours"]["dropout"] == 0.3 and models["ours"]["num_layers"] == 2
    assert models["ours"]["control"] and not models["report"]["control"] and not models["pytorch-book"]["control"]
    for config in configs.values():  # the same budget, one thread, bf16 left to auto
        assert (config["time_budget"], config["threads"], config["bf16"], config["max_steps"]) == (60, 1, "auto", 3)

    rows = json.loads((runs / "peers.json").read_text())
    assert [r["name"] for r in rows] == [*script.ARMS, "release"]
    assert all(math.isfinite(r["test"]) and r["steps"] == 3 for r in rows)
    assert [r["control"] for r in rows] == [False, False, True, True]
    assert len({r["characters"] for r in rows[:3]}) == 1  # control tokens aside, one vocabulary
    assert rows[-1]["curve"]  # the release's curve, from its run folder

    text = doc.read_text(encoding="utf-8")
    head, rest = text.split(script.MARK_START)
    table, tail = rest.split(script.MARK_END)
    assert (head, tail) == ("# Results\n\nprose before\n\n", "\n\n## Later\n\nprose after\n")
    for r in rows:
        assert f"| {r['label']} | " in table and f"**{r['test']:.2f}**" in table
    assert "60 s of training each" in table and "not yet run" not in table
    assert (doc.parent / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "comparison" not in json.loads((release / "training.json").read_text())  # no --annotate: untouched

    assert script.main([*args, "--no-train", "--annotate"]) == 0  # measured again, and recorded in the card
    assert doc.read_text(encoding="utf-8").count(script.MARK_START) == 1
    comparison = json.loads((release / "training.json").read_text())["comparison"]
    assert set(comparison["test_perplexity"]) == {r["label"] for r in rows}
    assert "| ours (the release recipe) |" in (release / "README.md").read_text()

    # The next release, fine-tuned from this one (whose training counts), scored beside it on the same poems.
    from tangpoem_hf.finetune import FinetuneOptions, finetune
    from tangpoem_hf.train_config import TrainConfig

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(script, "ROOT", tmp_path)
    cfg = TrainConfig(corpus=str(small_corpus), out_dir="next", max_steps=2, batch_size=4, seq_len=8, progress=False)
    finetune(cfg, FinetuneOptions(init_from="release"))
    again = [a for a in args if a not in (str(release), str(tmp_path / "release-run"), "--release")]
    again = [a if a != "--release-model" else "--release-model=next/best" for a in again]
    assert script.main([*again, "--previous-model", str(release), "--no-train"]) == 0
    rows = {r["name"]: r for r in json.loads((runs / "peers.json").read_text())}
    assert list(rows) == [*script.ARMS, "previous", "release"]
    base, new = (json.loads((tmp_path / f / "training.json").read_text()) for f in ("release", "next/best"))
    assert rows["release"]["steps"] == base["step"] + 2
    assert rows["release"]["train_seconds"] == pytest.approx(base["train_seconds"] + new["train_seconds"])
    assert rows["previous"]["steps"] == base["step"] and rows["previous"]["base"] is None
    table = doc.read_text(encoding="utf-8")
    assert f"Against the previous release on the same poems ({rows['previous']['test']:.2f}): " in table
    assert "continued from release (its 0 minutes and steps are counted)" in table


def test_a_killed_comparison_resumes_each_arm_and_then_only_reads_them(small_corpus, release, tmp_path, capsys):
    """Stopped by a signal, each arm keeps a checkpoint; the same command continues every arm from
    it, and once all are finished a rerun trains nothing and writes the same table."""
    import release_results as script

    doc, runs = results_page(tmp_path), tmp_path / "runs"
    args = ["--runs", str(runs), "--budget", "10", "--corpus", str(small_corpus), "--doc", str(doc)]
    args += ["--release-model", str(release), "--extra-train-args", f"{TINY} --epochs 1000 --checkpoint-every 20"]
    env = {**os.environ, "TANGPOEM_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(
        [sys.executable, str(ROOT / "experiments" / "release_results.py"), *args], env=env, start_new_session=True
    )
    deadline = time.monotonic() + 240
    while not all(has_checkpoint(runs / name / "checkpoints") for name in script.ARMS):
        assert time.monotonic() < deadline and first.poll() is None, "the arms did not reach a checkpoint"
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGTERM)  # the comparison and every arm, as a shutdown does
    first.wait()
    while True:  # each arm saves a checkpoint and exits
        try:
            os.killpg(first.pid, 0)
            time.sleep(0.2)
        except ProcessLookupError:
            break
    stopped = {}
    for name in script.ARMS:
        assert not (runs / name / "summary.json").exists()
        assert "Interrupted: checkpoint saved at step" in (runs / f"{name}.log").read_text()
        stopped[name] = load_latest(runs / name / "checkpoints")[1]["step"]

    assert script.main(args) == 0
    out = capsys.readouterr().out
    for name in script.ARMS:
        assert f"--resume --out-dir {runs / name}" in out
        log = (runs / f"{name}.log").read_text()
        assert f"Resumed from step {stopped[name]}." in log
        summary = json.loads((runs / name / "summary.json").read_text())
        assert summary["steps"] > stopped[name] and summary["train_seconds"] >= 10
        assert "time budget" in summary["stopped_by"]
    text = doc.read_text(encoding="utf-8")
    assert script.MARK_START in text and "not yet run" not in text

    assert script.main(args) == 0  # every arm finished: nothing trains, the table is the same
    assert "$ " not in capsys.readouterr().out and doc.read_text(encoding="utf-8") == text
