"""experiments/release_pilot.py end to end on a small made-up Tang + Song corpus: every arm trains a
few steps side by side, resumes nothing twice, and the table lands in the results page."""

from __future__ import annotations

import json

from conftest import poem_records, write_corpus
from test_corpus import song_records, write_song


def test_the_pilot_trains_every_arm_and_writes_its_table(tmp_path, tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setenv("TANGPOEM_CACHE", str(tmp_path / "cache"))  # the arms run in their own processes
    corpus = write_song(write_corpus(tmp_path / "ts", poem_records()), song_records())
    import release_pilot as pilot

    doc = tmp_path / "results.md"
    doc.write_text("# Results\n", encoding="utf-8")
    args = ["--corpus", str(corpus), "--budget", "1", "--runs", str(tmp_path / "runs"), "--width", "8",
            "--batch-size", "4", "--seq-len", "8", "--init-from", str(tiny_model_dir), "--doc", str(doc)]  # fmt: skip
    assert pilot.main(args) == 0
    rows = json.loads((tmp_path / "runs" / "pilot.json").read_text())
    assert [r["arm"] for r in rows] == ["v4 as bundled", *pilot.ARMS]
    for row in rows[1:]:
        assert row["steps"] >= 1 and row["tokens_per_s"] > 0 and row["song_val"] > 0
        assert row["val_common"] > 0 and row["common_poems"] == 8
        config = json.loads((tmp_path / "runs" / row["arm"] / "train_config.json").read_text())
        assert config["dynasties"] == "tang,song" and config["threads"] == 1
    configs = {
        r["arm"]: json.loads((tmp_path / "runs" / r["arm"] / "best" / "config.json").read_text()) for r in rows[1:]
    }
    assert configs["tied"]["tie_weights"] and not configs["today"]["tie_weights"]
    assert configs["tied-3-layers"]["num_layers"] == 3
    assert configs["warm-v4"]["embedding_dim"] == 16  # the base's architecture, its vocabulary grown
    assert configs["warm-v4"]["vocab_size"] > json.loads((tiny_model_dir / "config.json").read_text())["vocab_size"]
    text = doc.read_text(encoding="utf-8")
    assert text.count(pilot.MARK_START) == 1 and "| warm-v4 |" in text
    capsys.readouterr()
    assert pilot.main(args) == 0  # a rerun trains nothing: every arm is finished
    assert "$ " not in capsys.readouterr().out and doc.read_text(encoding="utf-8") == text
