"""experiments/decoding_study.py end to end on a tiny model and a small corpus: run, pairs, report."""

from __future__ import annotations

import json

import decoding_study as study


def test_study_runs_resumes_writes_blind_pairs_and_reports(tmp_path, small_corpus, tiny_model_dir, capsys):
    out = tmp_path / "study"
    args = ["--out", str(out), "--corpus", str(small_corpus), "--model", str(tiny_model_dir), "--per-form", "2"]
    assert study.main(["run", *args, "--arms", "c1", "lines-b2k4"]) == 0
    prompts = json.loads((out / "prompts.json").read_text(encoding="utf-8"))
    assert [p["form"] for p in prompts] == ["五绝", "五绝", "七绝", "七绝"] and [p["seed"] for p in prompts] == [
        0,
        1,
        0,
        1,
    ]
    assert {p["first"] for p in prompts} == {"空", "日"}  # 鹿柴 and 望庐山瀑布, the small corpus's test poems
    arm = (out / "arms" / "lines-b2k4.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(arm) == 5 and json.loads(arm[0])["settings"]["search"] == "lines"
    row = json.loads(arm[1])
    assert 0 <= row["unattested"] <= row["bigrams"] == 16 and row["seconds"] > 0 and row["plain_seconds"] > 0

    # resumable: a lost poem is written again, the others are kept as they were
    (out / "arms" / "lines-b2k4.jsonl").write_text("\n".join(arm[:-1]) + "\n", encoding="utf-8")
    study.main(["run", *args, "--arms", "lines-b2k4"])
    again = (out / "arms" / "lines-b2k4.jsonl").read_text(encoding="utf-8").splitlines()
    assert again[:-1] == arm[:-1] and json.loads(again[-1])["text"] == json.loads(arm[-1])["text"]

    assert study.main(["pairs", "--out", str(out), "--arms", "lines-b2k4"]) == 0
    folder = out / "pairs" / "lines-b2k4"
    pairs = json.loads((folder / "pairs.json").read_text(encoding="utf-8"))["pairs"]
    key = json.loads((folder / "key.json").read_text(encoding="utf-8"))
    assert len(pairs) + len(key["settings"]["ties"]) == 4
    assert "key" not in (folder / "pairs.md").read_text(encoding="utf-8").lower().split("#")[0]
    ours = {json.loads(line)["text"] for line in again[1:]}
    for p, k in zip(pairs, key["key"]):
        assert p[k["generated"]] in ours  # the key names the arm's poem

    answers = {str(k["pair"]): {"better": k["generated"], "reason": "x"} for k in key["key"]}
    (folder / "answers.json").write_text(json.dumps(answers), encoding="utf-8")

    # head to head: the line search against c1 instead of the baseline, in a folder of its own
    assert study.main(["pairs", "--out", str(out), "--arms", "lines-b2k4", "--versus", "c1"]) == 0
    h2h = out / "pairs" / "lines-b2k4~c1"
    h2h_key = json.loads((h2h / "key.json").read_text(encoding="utf-8"))
    c1 = {json.loads(line)["text"] for line in (out / "arms" / "c1.jsonl").read_text(encoding="utf-8").splitlines()[1:]}
    for p, k in zip(json.loads((h2h / "pairs.json").read_text(encoding="utf-8"))["pairs"], h2h_key["key"]):
        assert p[k["generated"]] in ours and p["A" if k["generated"] == "B" else "B"] in c1
    lost = {str(k["pair"]): "B" if k["generated"] == "A" else "A" for k in h2h_key["key"]}
    (h2h / "answers.json").write_text(json.dumps(lost), encoding="utf-8")
    docs = tmp_path / "judging.md"
    docs.write_text("# Judging\n\nolder text\n", encoding="utf-8")
    assert study.main(["report", "--out", str(out), "--docs", str(docs)]) == 0
    text = docs.read_text(encoding="utf-8")
    n = len(pairs)
    assert text.startswith("# Judging\n\nolder text") and f"| lines-b2k4 | app | {n} / {n} | 100% |" in text
    m = len(h2h_key["key"])
    assert f"| lines-b2k4 | c1 | 0 / {m} | 0% |" in text
    study.main(["report", "--out", str(out), "--docs", str(docs)])
    assert docs.read_text(encoding="utf-8").count(study.DOC_BEGIN) == 1  # a second report replaces the first


def test_sign_test_and_bigrams():
    assert study.sign_test(20, 40) == 1.0
    assert abs(study.sign_test(28, 39) - 0.0095) < 0.001  # the 28 of 39
    assert study.unattested(["白日依山尽"], {"白日", "日依", "依山"}) == (1, 4)
