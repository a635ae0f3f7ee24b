"""experiments/release_results.py end to end on tiny data."""

from __future__ import annotations

import json
import math


def test_release_results_end_to_end(small_corpus, tmp_path, capsys):
    """Peers trained side by side, every model measured on the test split, the doc and card written."""
    import shutil

    from conftest import tiny_train_args

    from tangpoem_hf.cli import main

    release = tmp_path / "release"
    assert main([*tiny_train_args(small_corpus, release), "--min-freq", "2"]) == 0
    bundled = tmp_path / "bundled"
    shutil.copytree(release / "best", bundled)
    import release_results as script

    tiny = "--embedding-dim 8 --hidden-size 8 --batch-size 4 --seq-len 8 --max-steps 3 --eval-every 1"
    args = ["--release", str(release), "--runs", str(tmp_path / "runs"), "--budget", "60", "--bundled", str(bundled)]
    args += ["--corpus", str(small_corpus), "--docs", str(tmp_path), "--extra-train-args", tiny]
    assert script.main(args) == 0
    doc = (tmp_path / "results.md").read_text()
    for label in ("release (bundled)", "report recipe", "pytorch-book recipe"):
        assert f"| {label} |" in doc
    assert "60 s of training each" in doc and "goal" in doc
    assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    info = json.loads((bundled / "training.json").read_text())
    ppl = info["comparison"]["test_perplexity"]
    assert set(ppl) == {"release (bundled)", "report recipe", "pytorch-book recipe"}
    assert all(math.isfinite(v) for v in ppl.values())
    card = (bundled / "README.md").read_text()
    assert "Compared on the same test split" in card and "| report recipe |" in card
    for name in ("report", "pytorch-book"):  # each peer ran its own recipe, trimmed by the extra arguments
        cfg = json.loads((tmp_path / "runs" / f"peer-{name}" / "train_config.json").read_text())
        assert cfg["optimizer"] == ("adagrad" if name == "report" else "adam") and cfg["max_steps"] == 3
    assert json.loads((tmp_path / "runs" / "peer-pytorch-book" / "train_config.json").read_text())["num_layers"] == 2
