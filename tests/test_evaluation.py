"""The metric suite on a tiny corpus and a random-weight model: the numbers are shaped right."""

from __future__ import annotations

import json
import math

import pytest
from conftest import make_tiny_model, poem_records, write_corpus

from tangpoem_hf import InputError
from tangpoem_hf.evaluation import build_reference, evaluate_model, poem_metrics, render_markdown


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = write_corpus(tmp_path_factory.mktemp("eval") / "corpus", poem_records())
    return build_reference(str(folder))


def test_poem_metrics_of_real_poems(reference):
    texts = ["白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"]
    m = poem_metrics(texts, "五绝", reference)
    assert m["format"] == m["rhyme"] == m["relaxed_tone"] == 1.0 and m["strict_tone"] == 0.0
    assert m["copied_lines"] == 1.0 and m["seen_4grams"] == 1.0  # the tiny corpus trains on it
    assert m["distinct_1"] == 1.0 and m["distinct_2"] == 1.0
    assert poem_metrics(texts, "七绝")["format"] == 0.0
    assert m["two_seasons"] == 0.0
    mixed = ["春风吹柳絮，秋雨满江城。", "春日依山尽，黄河入海流。"]
    assert poem_metrics(mixed, "五绝")["two_seasons"] == 0.5


def test_evaluate_model_meets_the_constrained_goals(reference):
    model = make_tiny_model()
    result = evaluate_model(model, num=16, forms=["五绝", "五律"], seed=3, reference=reference)
    json.dumps(result, ensure_ascii=False)
    for form, row in result["forms"].items():
        free, ruled = row["unconstrained"], row["rhyme + relaxed tone"]
        assert free["poems"] == ruled["poems"] == 16 and free["format"] == 1.0
        assert ruled["format"] == ruled["rhyme"] == ruled["relaxed_tone"] == 1.0
        assert 0 < ruled["distinct_1"] <= 1 and 0 <= ruled["copied_lines"] <= 1
        assert math.isfinite(row["heldout_perplexity"]) and row["heldout_perplexity"] > 1
        assert row["real (held-out)"]["poems"] > 0
        # Varied first characters, all of them first characters of training poems.
        firsts = {s[0] for s in ruled["samples"]}
        assert firsts <= {f for f in reference.first_chars[form]}
    text = render_markdown(result, "tangpoem evaluate --write-docs", "tiny")
    assert "## 五绝" in text and "| rhyme + relaxed tone | 16 | 100.0% | 100.0% | 100.0%" in text


def test_evaluate_rejects_unknown_forms(reference):
    with pytest.raises(InputError, match="form must be one of"):
        evaluate_model(make_tiny_model(), num=2, forms=["古风"], reference=reference)


def test_cli_evaluate_writes_docs(tmp_path, tiny_model_dir, monkeypatch, capsys):
    from tangpoem_hf.cli import main

    corpus = write_corpus(tmp_path / "corpus", poem_records())
    out = tmp_path / "evaluation.md"
    code = main(
        ["evaluate", "--model", str(tiny_model_dir), "--corpus", str(corpus), "--num", "4", "--form", "七绝",
         "--write-docs", str(out)]
    )  # fmt: skip
    assert code == 0 and "## 七绝" in out.read_text(encoding="utf-8")
    assert main(["evaluate", "--model", str(tiny_model_dir), "--corpus", str(corpus), "--form", "古风"]) == 2


def test_evaluate_a_model_without_start_markers(reference):
    model = make_tiny_model(preprocessing="report")
    result = evaluate_model(model, num=6, forms=["七绝"], seed=1, reference=reference)
    ruled = result["forms"]["七绝"]["rhyme + relaxed tone"]
    assert ruled["poems"] == 6 and ruled["format"] == ruled["rhyme"] == ruled["relaxed_tone"] == 1.0


# The headline figure, pinned: four poems (one traditional and bare, cut into lines by its length) scored
# by the bundled model through `tangpoem perplexity`. 132 real targets: 128 characters and marks, 4 ends.
HEADLINE_POEMS = [
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "白日依山盡黃河入海流欲窮千里目更上一層樓",
    "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。",
    "空山新雨后，天气晚来秋。明月松间照，清泉石上流。竹喧归浣女，莲动下渔舟。随意春芳歇，王孙自可留。",
]
HEADLINE_PERPLEXITY = 29.66367091889236  # recorded from the bundled model (release v4, control segment, 2026-12-01)


def test_headline_perplexity_of_the_bundled_model_is_the_recorded_value(tmp_path, capsys):
    from pathlib import Path

    from tangpoem_hf import load_model
    from tangpoem_hf.cli import main
    from tangpoem_hf.request import read_scoring_file
    from tangpoem_hf.scoring import perplexity, token_losses

    poems = tmp_path / "poems.txt"
    poems.write_text("\n".join(HEADLINE_POEMS) + "\n", encoding="utf-8")
    model = load_model()
    texts = [row["text"] for row in read_scoring_file(Path(poems), simplified=True)]
    assert token_losses(model, texts)[1] == 132
    assert perplexity(model, texts) == pytest.approx(HEADLINE_PERPLEXITY, rel=1e-4)
    assert main(["perplexity", str(poems)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[-2:] == ["poems: 4", f"perplexity: {HEADLINE_PERPLEXITY:.3f}"]
