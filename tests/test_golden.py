"""The same poems for the same requests: a fixed set of requests to the bundled model, each with
every setting spelled out (so that changing a default changes none of them), and the poems it gave
when recorded (tests/data/golden_poems.json).

A refactoring must leave every poem as it was. Re-record only for a deliberate change of what the
decoder writes (a new sampler, a new model), and say so in the commit::

    PYTHONPATH=. python -m tests.test_golden
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

GOLDEN = Path(__file__).parent / "data" / "golden_poems.json"


def _settings(**overrides: Any) -> dict[str, Any]:
    """Every sampling and rule setting, explicit."""
    base = {
        "form": 7,
        "temperature": 0.8,
        "top_p": 0.9,
        "top_k": None,
        "rhyme": False,
        "tone": "none",
        "no_repeat": False,
        "one_season": False,
        "search": "poem",
        "candidates": 1,
        "score": "mean",
        "coherence": 0.0,
    }
    return {**base, **overrides}


POEM = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
POEM_7 = "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。"

# (name, function, keyword arguments); every request names its seed, form, lines and rules.
REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    # every shape, plain sampling
    ("5x4 first", "generate_poem", _settings(first="月", form=5, lines=4, seed=0)),
    ("7x4 first", "generate_poem", _settings(first="山", form=7, lines=4, seed=1)),
    ("5x8 first", "generate_poem", _settings(first="春", form=5, lines=8, seed=2)),
    ("7x8 first", "generate_poem", _settings(first="江", form=7, lines=8, seed=3)),
    ("5x2 first", "generate_poem", _settings(first="花", form=5, lines=2, seed=4)),
    ("7x6 two first chars", "generate_poem", _settings(first="白日", form=7, lines=6, seed=5)),
    ("5x4 acrostic", "generate_poem", _settings(acrostic="春夏秋冬", form=5, lines=4, seed=6)),
    ("7x4 acrostic", "generate_poem", _settings(acrostic="明月清风", form=7, lines=4, seed=7)),
    ("7x6 acrostic", "generate_poem", _settings(acrostic="山高水长云白", form=7, lines=6, seed=8)),
    ("5x4 no start", "generate_poem", _settings(form=5, lines=4, seed=9)),
    ("7x4 no start", "generate_poem", _settings(form=7, lines=4, seed=10)),
    # themes
    ("5x4 title", "generate_poem", _settings(first="秋", form=5, lines=4, seed=11, title="秋思")),
    ("7x4 keywords", "generate_poem", _settings(first="月", form=7, lines=4, seed=12, keywords="明月 故乡")),
    ("5x4 keyword list", "generate_poem", _settings(form=5, lines=4, seed=13, keywords=["边塞", "孤城"])),
    (
        "7x8 title+keywords",
        "generate_poem",
        _settings(first="大", form=7, lines=8, seed=14, title="送别", keywords="杨柳"),
    ),
    # rules
    ("5x4 rhyme", "generate_poem", _settings(first="山", form=5, lines=4, seed=15, rhyme=True)),
    ("7x4 rhyme relaxed", "generate_poem", _settings(first="春", form=7, lines=4, seed=16, rhyme=True, tone="relaxed")),
    ("5x8 rhyme strict", "generate_poem", _settings(first="风", form=5, lines=8, seed=17, rhyme=True, tone="strict")),
    ("7x8 relaxed only", "generate_poem", _settings(first="雨", form=7, lines=8, seed=18, tone="relaxed")),
    ("7x4 rhyme group", "generate_poem", _settings(first="雪", form=7, lines=4, seed=19, rhyme_group="东")),
    (
        "5x4 keywords with rhyme and tone, seed 1",
        "generate_poem",
        _settings(first="月", form=5, lines=4, seed=1, keywords="明月 故乡", rhyme=True, tone="relaxed"),
    ),
    (
        "5x4 keywords with rhyme and tone, seed 5",
        "generate_poem",
        _settings(first="月", form=5, lines=4, seed=5, keywords="明月 故乡", rhyme=True, tone="relaxed"),
    ),
    ("5x4 no_repeat", "generate_poem", _settings(first="云", form=5, lines=4, seed=20, no_repeat=True)),
    (
        "7x4 acrostic rules",
        "generate_poem",
        _settings(acrostic="花好月圆", form=7, seed=21, rhyme=True, tone="relaxed", no_repeat=True),
    ),
    # candidates and sampling
    ("5x4 best of 4", "generate_poem", _settings(first="夜", form=5, lines=4, seed=22, candidates=4)),
    (
        "7x4 best of 8 app-like",
        "generate_poem",
        _settings(first="月", form=7, lines=4, seed=23, candidates=8, rhyme=True, tone="relaxed", no_repeat=True),
    ),
    ("7x4 temperature 0.5", "generate_poem", _settings(first="水", form=7, lines=4, seed=24, temperature=0.5)),
    ("5x4 temperature 1.3", "generate_poem", _settings(first="草", form=5, lines=4, seed=25, temperature=1.3)),
    ("7x4 top_p 0.5", "generate_poem", _settings(first="天", form=7, lines=4, seed=26, top_p=0.5)),
    ("5x4 top_p 1", "generate_poem", _settings(first="日", form=5, lines=4, seed=27, top_p=1.0)),
    ("7x4 top_k 20", "generate_poem", _settings(first="人", form=7, lines=4, seed=28, top_k=20, top_p=1.0)),
    ("5x4 top_k 5 top_p", "generate_poem", _settings(first="酒", form=5, lines=4, seed=29, top_k=5, top_p=0.8)),
    # line search
    (
        "7x4 line search t0.5 rules",
        "generate_poem",
        _settings(
            first="山",
            form=7,
            lines=4,
            seed=37,
            temperature=0.5,
            search="lines",
            beam=4,
            line_candidates=4,
            rhyme=True,
            tone="relaxed",
            no_repeat=True,
        ),
    ),  # fmt: skip
    (
        "5x4 line search sum coherence",
        "generate_poem",
        _settings(
            first="秋", form=5, lines=4, seed=38, search="lines", beam=2, line_candidates=3, score="sum", coherence=5.0
        ),
    ),
    # batches
    ("5x4 batch of 3", "generate_poems", _settings(first="林", form=5, lines=4, seed=30, num=3)),
    (
        "7x4 batch with candidates",
        "generate_poems",
        _settings(first="舟", form=7, lines=4, seed=31, num=2, candidates=4, rhyme=True, tone="relaxed"),
    ),
    # rewrites
    ("5x4 rewrite keep 0,1", "rewrite_poem", _settings(poem=POEM, keep=[0, 1], form=5, seed=32)),
    (
        "7x4 rewrite keep 1,3 rules",
        "rewrite_poem",
        _settings(poem=POEM_7, keep=[1, 3], seed=33, rhyme=True, tone="relaxed", candidates=4, no_repeat=True),
    ),
    ("5x4 rewrite acrostic", "rewrite_poem", _settings(poem=POEM, keep=[2], form=5, seed=34, acrostic="床疑举低")),
    # streaming: the last item is the poem
    ("5x4 stream", "stream_poem", _settings(first="松", form=5, lines=4, seed=35)),
    (
        "7x8 stream rules",
        "stream_poem",
        _settings(first="登", form=7, lines=8, seed=36, candidates=4, rhyme=True, tone="relaxed", no_repeat=True),
    ),
]


def _poem_record(poem: Any) -> dict[str, Any]:
    return {
        "seed": poem.seed,
        "lines": poem.lines,
        "notes": poem.notes,
        "others": [other.lines for other in poem.others],
    }


def run(model: Any, function: str, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """The poems one request gives, as plain data."""
    from tangpoem_hf import decoding

    kwargs = dict(kwargs)
    if function == "generate_poems":
        poems = decoding.generate_poems(model, **kwargs)
    elif function == "rewrite_poem":
        poems = [decoding.rewrite_poem(model, kwargs.pop("poem"), kwargs.pop("keep"), **kwargs)]
    elif function == "stream_poem":
        poems = [list(decoding.stream_poem(model, **kwargs))[-1]]
    else:
        poems = [decoding.generate_poem(model, **kwargs)]
    return [_poem_record(p) for p in poems]


@pytest.fixture(scope="module")
def bundled():
    from tangpoem_hf.modeling import load_model

    return load_model()


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


def test_golden_covers_every_request(golden: dict[str, Any]) -> None:
    assert sorted(golden) == sorted(name for name, _, _ in REQUESTS)


@pytest.mark.parametrize(("name", "function", "kwargs"), REQUESTS, ids=[name for name, _, _ in REQUESTS])
def test_same_request_same_poem(bundled, golden, name: str, function: str, kwargs: dict[str, Any]) -> None:
    assert run(bundled, function, kwargs) == golden[name]


def record() -> None:
    """Write tests/data/golden_poems.json from the code as it is now."""
    from tangpoem_hf.modeling import load_model

    model = load_model()
    poems = {name: run(model, function, kwargs) for name, function, kwargs in REQUESTS}
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(poems, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(poems)} requests to {GOLDEN}")


if __name__ == "__main__":
    record()
