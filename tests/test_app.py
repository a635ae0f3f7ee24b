"""The app as programs meet it: started on a free localhost port, called over HTTP with the real
``gradio_client``; plus the UI→kwargs glue of :mod:`tangpoem_hf.app_support`."""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from conftest import QUATRAINS as POEMS
from conftest import make_tiny_model
from gradio_client import Client
from gradio_client.exceptions import AppError

from tangpoem_hf import InputError, TangPoemLSTM
from tangpoem_hf.app_support import (
    candidate_choices,
    generation_kwargs,
    poem_html,
    unknown_chars_message,
    validate_chars,
    variants,
)
from tangpoem_hf.decoding import Poem, generate_poem
from tangpoem_hf.options import default_of
from tangpoem_hf.text import to_traditional

ROOT = Path(__file__).resolve().parents[1]
# The controls as a user leaves them (the sliders start at the package's defaults; top-k's 0 is "no limit").
DEFAULTS = {
    "temperature": default_of("temperature"),
    "top_k": 0,
    "top_p": default_of("top_p"),
    "theme": "",
    "script": "简体",
}


def tiny_model(texts: list[str] = POEMS, simplified: bool = True) -> TangPoemLSTM:
    return make_tiny_model(texts, simplified=simplified, hidden_size=16)


def import_app(name: str) -> ModuleType:
    """Import app.py fresh (as a Space or ``python app.py`` would), without launching it."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def serve(app: ModuleType) -> Iterator[str]:
    """Launch an imported app.py on a free localhost port; close it and forget the module afterwards."""
    port = free_port()
    app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, **app.STYLE)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.demo.close()
        sys.modules.pop(app.__name__, None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ModuleType, str, Client]]:
    folder = tmp_path_factory.mktemp("model") / "tiny"
    tiny_model().save_pretrained(folder)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        mp.setenv("MODEL_ID", str(folder))
        app = import_app("tangpoem_app_under_test")
        assert app._model is None  # importing neither loads the model nor launches
        with serve(app) as url:
            yield app, url, Client(url, verbose=False)


def call(client: Client, **kwargs: object) -> tuple[str, str, int]:
    return client.predict(**{**DEFAULTS, **kwargs}, api_name="/generate")


# --- over HTTP ---------------------------------------------------------------------------------


def test_generate_returns_a_poem_of_the_requested_shape(served: tuple[ModuleType, str, Client]) -> None:
    _, _, client = served
    html, text, seed = call(client, mode="续写", characters="明月", form="五言", lines=4, seed=7)
    rows = text.split("\n")
    assert len(rows) == 2 and text.startswith("明月")
    for row in rows:
        assert len(row) == 12 and row[5] == "，" and row[11] == "。"
    assert seed == 7
    assert html.count('class="tp-line"') == 4 and "五言绝句 · seed 7" in html
    assert call(client, mode="续写", characters="明月", form="五言", lines=4, seed=7)[1] == text  # reproducible


def test_eight_line_seven_character_poem(served: tuple[ModuleType, str, Client]) -> None:
    text = call(served[2], mode="续写", characters="山", form="七言", lines=8, seed=1)[1]
    assert [len(row) for row in text.split("\n")] == [16, 16, 16, 16]


def test_acrostic_in_traditional_script(served: tuple[ModuleType, str, Client]) -> None:
    html, text, _ = call(served[2], mode="藏头", characters="春江花月", form="七言", lines=4, seed=2, script="繁體")
    lines = [part for row in text.split("\n") for part in row.replace("。", "，").split("，") if part]
    assert [line[0] for line in lines] == list(to_traditional("春江花月"))
    assert all(len(line) == 7 for line in lines)
    assert 'lang="zh-Hant"' in html


def test_unset_seed_is_reported_for_reproduction(served: tuple[ModuleType, str, Client]) -> None:
    _, text, seed = call(served[2], mode="续写", characters="月", form="五言", lines=4, seed=None)
    assert isinstance(seed, int)
    assert call(served[2], mode="续写", characters="月", form="五言", lines=4, seed=seed)[1] == text


def test_streaming_yields_partial_poems(served: tuple[ModuleType, str, Client]) -> None:
    job = served[2].submit(
        **{**DEFAULTS, "mode": "续写", "characters": "白", "form": "五言", "lines": 4, "seed": 3}, api_name="/generate"
    )
    final = job.result(timeout=60)
    outputs = job.outputs()
    # Not one final answer: the first character at once, then every finished line (and the growing
    # line at most every app.STREAM_INTERVAL seconds).
    chars = [sum(ch not in "，。\n" for ch in text) for _, text, _ in outputs]
    assert chars == sorted(chars) and chars[0] == 1 and chars[-1] == 20
    assert {5, 10, 15, 20} <= set(chars)
    assert "tp-streaming" in outputs[0][0] and "tp-streaming" not in outputs[-1][0]
    assert tuple(outputs[-1]) == tuple(final)


@pytest.mark.parametrize(
    ("mode", "characters", "message"),
    [
        ("续写", "", "字 · Characters is empty: give at least one Chinese character."),
        ("续写", "moon", "may hold only Chinese characters, but contains 'm', 'n', 'o'"),
        ("续写", "龘", "The model does not know the character(s) 龘 in 字 · Characters"),
        ("藏头", "明月光白日依山黄河入海流欲穷千里目", "give 2 to 16 characters, not 17"),
    ],
)
def test_bad_input_gets_one_clear_sentence(
    served: tuple[ModuleType, str, Client], mode: str, characters: str, message: str
) -> None:
    with pytest.raises(AppError) as info:
        call(served[2], mode=mode, characters=characters, form="五言", lines=4, seed=1)
    assert message in str(info.value)
    assert "Traceback" not in str(info.value)


def test_out_of_range_setting_is_explained(served: tuple[ModuleType, str, Client]) -> None:
    # The slider's own bounds check answers first, also with one sentence.
    with pytest.raises(AppError, match="Value 1.5 is greater than maximum value 1.0"):
        call(served[2], mode="续写", characters="月", form="五言", lines=4, seed=1, top_p=1.5)


def test_generate_needs_only_the_characters(served: tuple[ModuleType, str, Client]) -> None:
    """Every other argument is optional over the API (the seed too): the package's defaults apply."""
    app, _, client = served
    html, text, seed = client.predict(characters="月", api_name="/generate")
    assert isinstance(seed, int) and text.startswith("月") and [len(r) for r in text.split("\n")] == [16, 16]
    assert text == generate_poem(app.get_model(), first="月", seed=seed).text


def test_rewrite_keeps_the_locked_lines_over_http(served: tuple[ModuleType, str, Client]) -> None:
    _, _, client = served
    _, text, _ = call(client, mode="续写", characters="山", form="五言", lines=4, seed=5)
    _, new, seed = client.predict(poem=text, keep=[1, 4], api_name="/rewrite")  # characters, seed… optional
    old_lines, new_lines = _lines(text), _lines(new)
    assert [new_lines[0], new_lines[3]] == [old_lines[0], old_lines[3]] and isinstance(seed, int)
    assert new_lines[1:3] != old_lines[1:3]
    _, again, _ = client.predict(poem=text, keep=[1, 4], seed=seed, api_name="/rewrite")
    assert again == new  # a rewrite is reproducible from its reported seed
    with pytest.raises(AppError, match="Lines to keep are numbered from 1 to 4, not 7."):
        client.predict(poem=text, keep=[7], api_name="/rewrite")
    with pytest.raises(AppError, match="There is no poem to rewrite yet"):
        client.predict(poem="", keep=[1], api_name="/rewrite")


def test_rewrite_blames_the_poem_for_a_bad_poem(served: tuple[ModuleType, str, Client]) -> None:
    """Without characters the poem's heads stand in for them, but bad text is the poem's fault."""
    with pytest.raises(AppError) as info:
        served[2].predict(poem="hello", keep=[1], api_name="/rewrite")
    message = str(info.value)
    assert "诗 · Poem may hold only Chinese characters, but contains 'e', 'h', 'l', 'o'." in message
    assert "字 · Characters" not in message


def test_rewrite_an_acrostic_keeps_its_heads(served: tuple[ModuleType, str, Client]) -> None:
    _, _, client = served
    _, text, _ = call(client, mode="藏头", characters="春江花月", form="七言", lines=4, seed=2)
    _, new, _ = client.predict(poem=text, keep=[3], mode="藏头", api_name="/rewrite")  # heads from the poem
    assert [line[0] for line in _lines(new)] == list("春江花月") and _lines(new)[2] == _lines(text)[2]


def test_rewrite_one_line_keeps_all_the_others(served: tuple[ModuleType, str, Client]) -> None:
    app, _, client = served
    _, text, _ = call(client, mode="续写", characters="山", form="七言", lines=8, seed=4)
    final = list(app.redo_line(text, 3))[-1]
    old, new = _lines(text), _lines(final[1])
    assert new[2] != old[2] and new[:2] + new[3:] == old[:2] + old[3:]


def _lines(text: str) -> list[str]:
    return [part for part in text.replace("。", "，").replace("\n", "").split("，") if part]


def test_page_and_queue_configuration(served: tuple[ModuleType, str, Client]) -> None:
    app, url, _ = served
    page = httpx.get(url, timeout=30)
    assert page.status_code == 200 and "唐诗生成器 · Tang Poem Generator" in page.text
    config = httpx.get(url + "config", timeout=30).json()
    labels = {c.get("props", {}).get("label") for c in config["components"]}
    assert {"模式 · Mode", "字 · Characters", "体裁 · Form", "句数 · Lines", "输出字体 · Script"} <= labels
    assert app.demo._queue.max_size == app.QUEUE_MAX_SIZE > 0
    assert app.demo._queue.default_concurrency_limit == app.CONCURRENCY_LIMIT


def test_a_burst_gets_a_busy_message_not_a_hang(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny_model().save_pretrained(tmp_path / "tiny")
    for key, value in {
        "MODEL_ID": str(tmp_path / "tiny"),
        "TANGPOEM_QUEUE_SIZE": "1",
        "TANGPOEM_CONCURRENCY": "1",
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }.items():
        monkeypatch.setenv(key, value)
    app = import_app("tangpoem_app_small_queue")
    # The first job holds the only worker until a later job has been turned away, so the burst meets
    # a busy server however fast generation is, and nothing waits on a clock.
    gate = threading.Event()
    real_server = app.get_server

    class HeldServer:
        def __init__(self) -> None:
            self.model = real_server().model

        def stream(self, *args: object, **kwargs: object) -> Iterator[object]:
            gate.wait(30)
            yield from real_server().stream(*args, **kwargs)

    monkeypatch.setattr(app, "get_server", HeldServer)
    with serve(app) as url:
        client = Client(url, verbose=False)
        request = {**DEFAULTS, "mode": "续写", "characters": "山", "form": "七言", "lines": 16, "seed": 1}
        jobs = [client.submit(**request, api_name="/generate") for _ in range(6)]
        # Held and queued jobs cannot finish before the gate opens: the first to finish was turned away.
        done, _ = wait([job.future for job in jobs], timeout=120, return_when=FIRST_COMPLETED)
        gate.set()
        assert done, "no job was turned away while the worker was busy"
        outcomes = []
        for job in jobs:
            try:
                outcomes.append(job.result(timeout=120)[1][0])
            except Exception as exc:  # the client raises its own error types for a rejected job
                outcomes.append(str(exc))
        assert "山" in outcomes  # the first job is served
        assert any("Queue is full" in o for o in outcomes), outcomes  # later ones are told, at once


# --- the glue, without a server -------------------------------------------------------------


def test_generation_kwargs_maps_ui_values() -> None:
    tok = tiny_model().tokenizer
    ui = {"mode": "续写", "characters": " 明月 ", "form": "七言", "lines": 8.0, "temperature": 0.7, "top_k": 0}
    assert generation_kwargs(tok, **ui, top_p=0.9, seed=5.0, theme="") == {
        "first": "明月",
        "lines": 8,
        "form": 7,
        "temperature": 0.7,
        "top_k": None,
        "top_p": 0.9,
        "seed": 5,
    }
    assert generation_kwargs(tok, characters="月") == {"first": "月"}  # the rest: the package's defaults
    acrostic = generation_kwargs(
        tok, mode="acrostic", characters="春江花月", form="五言", top_k=40.0, seed=None, theme="明月，", rhyme=True
    )
    assert acrostic["acrostic"] == "春江花月" and "first" not in acrostic
    assert acrostic["top_k"] == 40 and acrostic["seed"] is None and acrostic["keywords"] == ["明月"]
    assert acrostic["rhyme"] is True  # the other controls pass straight through
    with pytest.raises(InputError, match="mode"):
        generation_kwargs(tok, mode="sonnet", characters="月")
    with pytest.raises(InputError, match="主题"):
        generation_kwargs(tok, characters="月", theme="xyz")


def test_unknown_character_suggests_the_known_form() -> None:
    traditional = tiny_model([to_traditional(p) for p in POEMS], simplified=False).tokenizer
    assert "龍" in traditional and "龙" not in traditional
    with pytest.raises(InputError, match="龙 in 字 · Characters; try 龍 for 龙"):
        validate_chars(traditional, "龙", "字 · Characters")
    simplified = tiny_model().tokenizer
    message = unknown_chars_message(simplified, "鑾", "字 · Characters")
    assert message is not None and "鑾（简体 銮）" in message
    assert validate_chars(simplified, "龍城", "字 · Characters") == "龙城"  # traditional input is converted
    assert "樱" in variants("桜")  # Japanese shinjitai → simplified


def test_candidates_are_listed_as_ranked_poems() -> None:
    """Each candidate is its rank and the whole poem: no raw log-probability a reader cannot read."""
    best = Poem(["明月松间照", "清泉石上流"], form=5, seed=1, total_lines=2, score=-3.42)
    best.others = [Poem(["明月照高楼", "流光正徘徊"], form=5, seed=1, total_lines=2, score=-4.1)]
    assert candidate_choices(best) == [("1. 明月松间照，清泉石上流。", 0), ("2. 明月照高楼，流光正徘徊。", 1)]
    assert candidate_choices(best, "traditional")[1] == ("2. 明月照高樓，流光正徘徊。", 1)


def test_poem_html_marks_the_growing_line() -> None:
    partial = poem_html(Poem(["明月松间照"], form=5, seed=1, total_lines=4, partial="清泉"), "simplified")
    assert partial.count('class="tp-slot"') == 3 and "tp-cursor" in partial and "tp-streaming" in partial
    done = poem_html(Poem(["明月松间照", "清泉石上流"], form=5, seed=1, total_lines=2), "traditional")
    assert "明月松間照" in done and "tp-cursor" not in done and "五言二句" in done and 'lang="zh-Hant"' in done
    assert "tp-note" not in done


def test_a_broken_rule_is_shown_under_the_poem(served: tuple[ModuleType, str, Client]) -> None:
    """The app says when a rule the user asked for could not hold (明 cannot open a strict 仄起 line)."""
    app, _, client = served
    html, text, seed = call(client, mode="续写", characters="明月", form="五言", lines=8, seed=0, tone="strict")
    expected = generate_poem(app.get_model(), first="明月", form=5, lines=8, seed=0, tone="strict")
    assert expected.notes and text == expected.text
    assert html.count('class="tp-note"') == len(expected.notes)
    assert all(note.replace("<", "&lt;") in html for note in expected.notes)
