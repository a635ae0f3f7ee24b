"""experiments/compare_start_states.py end to end on tiny data."""

from __future__ import annotations

from tangpoem_hf import TangPoemLSTM


def test_compare_start_states_end_to_end(small_corpus, tmp_path):
    """Both recipes trained side by side, each measured from its own start state, the doc written."""
    import compare_start_states as script

    tiny = "--embedding-dim 8 --hidden-size 8 --batch-size 4 --seq-len 8 --eval-every 2"
    args = ["--steps", "3", "--runs", str(tmp_path / "runs"), "--corpus", str(small_corpus)]
    args += ["--doc", str(tmp_path / "start.md"), "--extra-train-args", tiny]
    assert script.main(args) == 0
    doc = (tmp_path / "start.md").read_text(encoding="utf-8")
    assert "| stored |" in doc and "| learned |" in doc and "| zeros |" in doc and "wins on the test split" in doc
    learned = TangPoemLSTM.from_pretrained(tmp_path / "runs" / "start-learned" / "best")
    stored = TangPoemLSTM.from_pretrained(tmp_path / "runs" / "start-stored" / "best")
    assert learned.config.start_state == "learned" and stored.config.start_state == "stored"
    assert script.main([*args, "--no-train"]) == 0  # measuring again needs no training
