"""The tangpoem Gradio app (Gradio 6 Blocks): write a Tang poem that streams in line by line,
then keep the lines you like and have the others rewritten.

A thin layer over :mod:`tangpoem_hf.decoding`: the inputs are mapped by
:mod:`tangpoem_hf.app_support`, every validation rule lives in the package, and an ``InputError``
becomes a ``gr.Error`` with its one sentence. ``MODEL_ID`` (a Hub repo id or a local folder)
picks the model; unset means the bundled one. ``python app.py`` serves it on localhost.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import gradio as gr
import torch

from tangpoem_hf.app_support import (
    PLACEHOLDER_HTML,
    candidate_choices,
    generation_request,
    line_choices,
    model_id_from_env,
    poem_html,
    poem_text,
    rewrite_ui_request,
    script_of,
)
from tangpoem_hf.decoding import Poem
from tangpoem_hf.errors import InputError, TangPoemError
from tangpoem_hf.modeling import TangPoemLSTM, load_model
from tangpoem_hf.options import DEFAULT_LINES, MAX_LINES, OPTIONS, GenerationOptions, default_of, verse_rules
from tangpoem_hf.request import PoemRequest
from tangpoem_hf.serving import PoemServer
from tangpoem_hf.text import split_rows

MODEL_ID = model_id_from_env()
# Up to eight poems in progress, decoded together as one batch by the PoemServer, and a bounded
# queue behind them, so a burst of users gets "queue is full" instead of an ever-growing wait.
CONCURRENCY_LIMIT = int(os.environ.get("TANGPOEM_CONCURRENCY", "8"))
# Rows one default poem decodes (a line search: beam × line candidates), so that all of them fit in a step.
DEFAULT_ROWS = (
    default_of("beam") * default_of("line_candidates") if default_of("search") == "lines" else default_of("candidates")
)
# One torch thread: the server's batched LSTM step is small, and the other core is left to Gradio's
# own per-request work, which is the larger share under load (see benchmarks/app_load.py).
torch.set_num_threads(int(os.environ.get("TANGPOEM_TORCH_THREADS", "1")))
# Each character passes from the server's worker thread to a request's thread; with Python's default
# 5 ms GIL switch interval every hand-off could wait that long (a lone poem took 0.16 s instead of
# 0.13 s), so threads take turns every 0.5 ms (benchmarks/app_load.py).
sys.setswitchinterval(0.0005)
STREAM_INTERVAL = 0.1  # seconds between updates of the growing line (finished lines go at once)
QUEUE_MAX_SIZE = int(os.environ.get("TANGPOEM_QUEUE_SIZE", "16"))

_model: TangPoemLSTM | None = None
_server: PoemServer | None = None
_model_lock = threading.Lock()


def get_model() -> TangPoemLSTM:
    """Load the model once, on first use, so importing the app never touches the disk or the Hub."""
    global _model
    with _model_lock:
        if _model is None:
            _model = load_model(MODEL_ID)
        return _model


def get_server() -> PoemServer:
    """The one decoding loop all requests share, so concurrent users' poems step as one batch."""
    global _server
    model = get_model()
    with _model_lock:
        if _server is None:
            _server = PoemServer(model, max_batch=CONCURRENCY_LIMIT * DEFAULT_ROWS)
        return _server


def _stream(request: PoemRequest, script: object) -> Iterator[tuple[Any, ...]]:
    """Stream a request's poem: (HTML, plain text, seed, the finished poem for the session)."""
    out_script = script_of(script)
    last = 0.0
    for poem in get_server().stream(request):
        if poem.finished:  # the best candidate, the others attached
            yield poem_html(poem, out_script), poem_text(poem, out_script), poem.seed, poem
            continue
        # Every finished line, and the growing line at most every STREAM_INTERVAL: a character
        # takes ~4 ms, far below what an eye sees, and each update costs the server a render and
        # a message under the GIL, which is what limits a burst of users (benchmarks/app_load.py).
        now = time.monotonic()
        if not poem.partial or now - last >= STREAM_INTERVAL:
            last = now
            yield poem_html(poem, out_script), poem_text(poem, out_script), poem.seed, gr.skip()


def _as_gr_error(exc: TangPoemError) -> gr.Error:
    title = "输入有误 · Input error" if isinstance(exc, InputError) else "模型有误 · Model error"
    log_refusal(str(exc))
    return gr.Error(str(exc), title=title, print_exception=False)


def log_refusal(message: str) -> None:
    """One line in the server log for a refused request: the sentence the user saw, no traceback."""
    print(f"tangpoem app: refused a request: {message}", file=sys.stderr, flush=True)


def quiet_checks(component: gr.components.Component) -> None:
    """Gradio's own range checks (a slider's bounds, a radio's choices) raise a gr.Error that prints
    a traceback in the server log; make them refuse with one line there too, like the package's errors."""
    check = component.preprocess

    def preprocess(payload: Any) -> Any:
        try:
            return check(payload)
        except gr.Error as exc:
            log_refusal(exc.message)
            raise gr.Error(exc.message, title="输入有误 · Input error", print_exception=False) from None

    component.preprocess = preprocess


def generate(characters: str = "", seed: float | None = None, script: str = "简体", **settings: Any) -> Iterator:
    """Stream a poem: (HTML of the poem so far, its plain text, the seed used). ``settings`` are the
    other controls by name (``GENERATE`` below); over the API each one left out takes its default."""
    try:
        request = generation_request(get_server().model.tokenizer, characters=characters, seed=seed, **settings)
        yield from _stream(request, script)
    except TangPoemError as exc:
        raise _as_gr_error(exc) from None


def rewrite(
    poem: str,
    keep: list[int] | None = None,
    characters: str | None = None,
    seed: float | None = None,
    script: str = "简体",
    **settings: Any,
) -> Iterator[tuple[Any, ...]]:
    """Keep the lines numbered ``keep`` (from 1) of ``poem`` and stream the others rewritten.
    Without ``characters``, the poem's own first character (续写) or heads (藏头) are kept."""
    try:
        tokenizer = get_server().model.tokenizer
        request = rewrite_ui_request(tokenizer, poem, keep, characters=characters, seed=seed, **settings)
        yield from _stream(request, script)
    except TangPoemError as exc:
        raise _as_gr_error(exc) from None


def redo_line(poem: str, line: int | None, **settings: Any) -> Iterator[tuple[Any, ...]]:
    """Rewrite only line ``line`` (from 1): every other line is kept."""
    count = len(split_rows(poem or ""))
    if line is None:
        log_refusal("Choose the line to rewrite.")
        raise gr.Error("Choose the line to rewrite.", title="输入有误 · Input error", print_exception=False)
    yield from rewrite(poem, [n for n in range(1, count + 1) if n != line], **settings)


def show_controls(poem: Poem | None, script: str, locks: list[int] | None, reset: bool) -> tuple[Any, ...]:
    """After a poem: the co-writing tools appear, the lock boxes and the one-line choice name its
    lines, and the candidates are listed as ranked poems."""
    if not isinstance(poem, Poem):
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    out_script = script_of(script)
    choices = line_choices(poem, out_script)
    kept = [] if reset else [n for n in (locks or []) if n <= len(choices)]
    return (
        gr.CheckboxGroup(choices=choices, value=kept),
        gr.Dropdown(choices=choices, value=None),
        gr.Radio(choices=candidate_choices(poem, out_script), value=0, visible=len(poem.others) > 0),
        gr.Column(visible=True),
    )


def show_candidate(poem: Poem | None, index: int | None, script: str) -> tuple[Any, ...]:
    """Show another of the candidates drawn (they stay attached to the best one)."""
    if not isinstance(poem, Poem) or index is None:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    chosen = [poem, *poem.others][int(index)]
    out_script = script_of(script)
    choices = line_choices(chosen, out_script)
    return (
        poem_html(chosen, out_script),
        poem_text(chosen, out_script),
        gr.CheckboxGroup(choices=choices, value=[]),
        gr.Dropdown(choices=choices, value=None),
    )


# The rules the app starts with: the default ones, as for every other interface (for the starting
# line count; the checkbox and the radio then send what the user sees).
RULES = verse_rules(GenerationOptions(lines=DEFAULT_LINES))


def slider(name: str, label: str, value: float | None = None, **kwargs: Any) -> gr.Slider:
    """A slider for setting ``name``: its bounds, step and default from options.GenerationOptions."""
    low, high, step = OPTIONS[name].metadata["ui"]
    value = default_of(name) if value is None else value
    return gr.Slider(low, high, value=value, step=step, label=label, **kwargs)


def radio(name: str, label: str, names: dict[str, str], **kwargs: Any) -> gr.Radio:
    """A radio for setting ``name``: one button per choice (``names`` labels them), its default chosen."""
    choices = [(names[c], c) for c in OPTIONS[name].metadata["choices"]]
    return gr.Radio(choices, value=default_of(name), label=label, **kwargs)


EXAMPLES = [
    ["续写", "床前", "五言", 4, ""],
    ["藏头", "春夏秋冬", "七言", 4, ""],
    ["续写", "大漠", "五言", 8, "边塞"],
    ["续写", "江", "七言", 4, "秋思"],
    ["藏头", "明月清风", "五言", 4, "山水"],
]

FONT_SANS = ["Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei", "system-ui", "sans-serif"]
FONT_SERIF = (
    '"Noto Serif CJK SC", "Source Han Serif SC", "Songti SC", "STSong", "SimSun", '
    '"Noto Serif CJK TC", "Source Han Serif TC", serif'
)
THEME = gr.themes.Soft(primary_hue="red", neutral_hue="stone", font=FONT_SANS, font_mono=["monospace"]).set(
    button_primary_background_fill="*primary_700",
    button_primary_background_fill_hover="*primary_800",
    button_primary_text_color="white",
)

# Page-level CSS (passed to launch()); the poem's own CSS travels with its component below.
CSS = """
.gradio-container { max-width: 1100px !important; margin: 0 auto; }
#tp-header { text-align: center; padding: 0.6rem 0 0.2rem; }
#tp-header h1 { font-family: FONT_SERIF; font-size: 2.2rem; letter-spacing: 0.3em; margin: 0; }
#tp-header h1 small { display: block; font-size: 1rem; letter-spacing: 0.05em; font-weight: 400; opacity: 0.7; }
#tp-header p { margin: 0.4rem 0 0; opacity: 0.75; }
/* Side by side when there is room; on a phone the poem goes under the form, never off to the side. */
#tp-main { flex-wrap: wrap; }
/* A closed panel says so in words, an open one too; the bare ◀/▼ arrow did not. */
.tp-panel > .label-wrap .icon { display: none; }
.tp-panel > .label-wrap::after { content: "展开 ▸ show"; font-size: 0.85em; opacity: 0.7; white-space: nowrap; }
.tp-panel > .label-wrap.open::after { content: "收起 ▾ hide"; }
""".replace("FONT_SERIF", FONT_SERIF)
SCROLL_TO_POEM = """() => {
  const poem = document.getElementById("tp-poem");
  const box = poem && poem.getBoundingClientRect();
  if (box && (box.top < 0 || box.bottom > window.innerHeight)) poem.scrollIntoView({block: "start"});
}"""
# show_error: input Gradio itself refuses (text in the seed box over the API) still gets its one sentence.
STYLE: dict[str, Any] = {"theme": THEME, "css": CSS, "show_error": True}

POEM_CSS = """
.tp-poem { font-family: FONT_SERIF; text-align: center; padding: 2.2rem 1rem 1.4rem; min-height: 16rem;
  background: linear-gradient(#fbf7ee, #f6efdf); color: #2b2118; border: 1px solid #e4d8bf;
  border-radius: 12px; box-shadow: inset 0 0 40px rgba(160, 120, 60, 0.08); }
.tp-row { font-size: 1.75rem; line-height: 1.9; letter-spacing: 0.08em; margin: 0; }
.tp-line { display: inline-block; white-space: nowrap; padding: 0 0.15em; }
.tp-punct { color: #9b7b55; }
.tp-slot { display: inline-block; width: 1em; height: 1em; vertical-align: -0.1em;
  border-bottom: 1px dotted #cdb992; margin: 0 0.06em; }
.tp-slot-punct { visibility: hidden; }
.tp-cursor { display: inline-block; width: 2px; height: 1em; vertical-align: -0.1em; background: #b0413e;
  animation: tp-blink 1s steps(1) infinite; }
.tp-meta { font-size: 0.9rem; color: #8a7356; margin-top: 1.2rem; letter-spacing: 0.1em; }
.tp-note { font-family: system-ui, sans-serif; font-size: 0.8rem; color: #9b3d2e; margin: 0.4rem 1rem 0; }
.tp-hint { font-size: 1.4rem; color: #a8926f; margin-top: 4.5rem; letter-spacing: 0.2em; }
.tp-en { font-size: 0.9rem; letter-spacing: 0.02em; }
.tp-poem[lang="zh-Hant"] { font-family: "Noto Serif CJK TC", "Source Han Serif TC", FONT_SERIF; }
@keyframes tp-blink { 50% { opacity: 0; } }
@media (prefers-color-scheme: dark) {
  .tp-poem { background: #2a241d; color: #f1e6d2; border-color: #4a3f30; }
}
""".replace("FONT_SERIF", FONT_SERIF)

with gr.Blocks(title="唐诗生成器 · Tang Poem Generator") as demo:
    gr.HTML(
        '<div id="tp-header"><h1>唐诗生成器<small>Tang Poem Generator</small></h1>'
        "<p>一个字符级 LSTM 续写或藏头作诗 · A character-level LSTM writes a poem from your first "
        "characters or as an acrostic</p></div>"
    )
    # The first screen (1280×900) holds what a first poem needs, the button and the poem; the verse
    # rules and sampling wait in closed panels, the co-writing tools until there is a poem.
    with gr.Row(equal_height=False, elem_id="tp-main"):
        with gr.Column(scale=5, min_width=300):
            mode = gr.Radio(
                [("续写 · Continue", "续写"), ("藏头 · Acrostic", "藏头")],
                value="续写",
                label="模式 · Mode",
                info="续写：以这些字开篇 · Continue from the characters; 藏头：每句首字 · one per line",
            )
            characters = gr.Textbox(
                value=None,  # no default: over the API the characters are the one required argument
                label="字 · Characters",
                elem_id="tp-chars",
                placeholder="例如 山、春江、春夏秋冬 · e.g. 山",
                info="汉字，简繁皆可 · Chinese characters, simplified or traditional",
                max_length=200,
            )
            with gr.Row():
                form = gr.Radio(
                    [("五言 · 5 per line", "五言"), ("七言 · 7 per line", "七言")],
                    value={5: "五言", 7: "七言"}[default_of("form")],
                    label="体裁 · Form",
                )
                lines = slider(
                    "lines", "句数 · Lines", value=DEFAULT_LINES, info="藏头时等于首字数 · Acrostic: one line per head"
                )
            theme = gr.Textbox(
                "",
                label="主题 · Theme (optional)",
                placeholder="题目，或以空格分隔的关键词 · a title, or keywords: 明月 故乡",
                info="空格分隔的词各入诗一次 · Words split by spaces each appear in the poem",
                max_length=200,
            )
            button = gr.Button("作诗 · Generate", variant="primary", size="lg", elem_id="tp-generate")
            with gr.Accordion("格律与字体 · Rhyme, tones and script", open=False, elem_classes="tp-panel"):
                with gr.Row():
                    rhyme = gr.Checkbox(
                        value=RULES[0], label="押韵 · Rhyme", info="偶句押平水韵平声 · even lines rhyme (平水韵)"
                    )
                    tone = gr.Radio(
                        [("不限 · Free", "none"), ("宽 · Relaxed", "relaxed"), ("严 · Strict", "strict")],
                        value=RULES[1] or "none",
                        label="平仄 · Tones",
                        info="宽：一三五不论 · relaxed: positions 1, 3, 5 free",
                    )
                with gr.Row():
                    no_repeat = gr.Checkbox(
                        value=default_of("no_repeat"),
                        label="不重字 · No repeats",
                        info="叠字与所给之字除外 · except 叠字 and your characters",
                    )
                    one_season = gr.Checkbox(
                        value=default_of("one_season"),
                        label="一季 · One season",
                        info="春夏秋冬只写其一 · 春, 夏, 秋 or 冬: one only, unless you give more",
                    )
                script = gr.Radio(
                    [("简体 · Simplified", "简体"), ("繁體 · Traditional", "繁體")],
                    value="简体",
                    label="输出字体 · Script",
                )
            with gr.Accordion("采样设置 · Sampling", open=False, elem_classes="tp-panel"):
                temperature = slider("temperature", "温度 · Temperature")
                top_k = slider("top_k", "Top-k", value=0, info="0 = 不限 · no limit")
                top_p = slider("top_p", "Top-p")
                search = radio(
                    "search",
                    "搜索 · Search",
                    {"lines": "逐句 · Line by line", "poem": "整首 · Whole poems"},
                    info="逐句：每句后留最好的几首 · line by line: keep the best partial poems after each line",
                )
                with gr.Row():
                    beam = slider("beam", "保留 · Beam", info="逐句时 · line by line: partial poems kept")
                    line_candidates = slider(
                        "line_candidates", "每句候选 · Line candidates", info="逐句时 · line by line: lines per poem"
                    )
                    candidates = slider(
                        "candidates", "候选 · Candidates", info="整首时择优而取 · whole poems: the best is shown"
                    )
                with gr.Row():
                    score = radio("score", "评分 · Score", {"mean": "平均 · Mean", "sum": "总和 · Sum"})
                    coherence = slider(
                        "coherence", "连贯 · Coherence", info="句间连贯之权重 · weight of cross-line coherence"
                    )
                seed = gr.Number(
                    # No precision: a seed of 1.5 must be refused, not silently rounded.
                    value=None,
                    minimum=0,
                    label="种子 · Seed",
                    info="留空则随机 · Blank for random",
                )
        with gr.Column(scale=6, min_width=300):
            poem = gr.HTML(
                PLACEHOLDER_HTML, label="诗 · Poem", css_template=POEM_CSS, elem_id="tp-poem", js_on_load=None
            )
            # Hidden until a poem exists: before that, these would name lines and a seed of nothing.
            with gr.Column(visible=False, elem_id="tp-after") as after:
                picker = gr.Radio(
                    [],
                    label="候选 · Candidates, best first",
                    info="按模型所见之可能性排列 · ranked by how likely the model finds each poem; click one to see it",
                    visible=False,
                    elem_id="tp-candidates",
                )
                locks = gr.CheckboxGroup(
                    [(str(n), n) for n in range(1, MAX_LINES + 1)],
                    label="锁定 · Keep lines",
                    info="勾选要保留的句子，其余重写 · tick the lines to keep; the others are rewritten",
                    elem_id="tp-locks",
                )
                with gr.Row():
                    rewrite_button = gr.Button("重写未锁定的句子 · Rewrite the others", elem_id="tp-rewrite")
                    one_line = gr.Dropdown([], label="重写一句 · Rewrite one line", elem_id="tp-one-line", scale=1)
                    one_button = gr.Button("重写此句 · Rewrite it", elem_id="tp-rewrite-one", scale=1)
                with gr.Row():
                    text = gr.Textbox(
                        label="纯文本 · Plain text", lines=4, buttons=["copy"], interactive=False, scale=3
                    )
                    seed_used = gr.Number(
                        label="所用种子 · Seed used", precision=0, interactive=False, scale=1, elem_id="tp-seed-used"
                    )
            current = gr.State(None)
            rewrite_seed = gr.Number(value=None, visible=False)
    gr.Examples(
        EXAMPLES,
        inputs=[mode, characters, form, lines, theme],
        label="示例（点击试试）· Examples (click to try)",
        # Buttons that wrap, not a five-column table that pushed a phone's page sideways.
        example_labels=[f"{m} {c} · {f}{n}句" + (f" · {t}" if t else "") for m, c, f, n, t in EXAMPLES],
        elem_id="tp-examples",
    )
    # Every control reaches the handlers by name (the API's parameter names and order too).
    GENERATE = {
        "mode": mode, "characters": characters, "form": form, "lines": lines, "temperature": temperature,
        "top_k": top_k, "top_p": top_p, "seed": seed, "theme": theme, "script": script, "rhyme": rhyme, "tone": tone,
        "no_repeat": no_repeat, "one_season": one_season, "candidates": candidates, "search": search, "beam": beam,
        "line_candidates": line_candidates, "score": score, "coherence": coherence,
    }  # fmt: skip
    # A rewrite keeps the poem's shape and has a seed of its own.
    settings = {name: c for name, c in GENERATE.items() if name not in ("lines", "seed")}
    shown = [poem, text, seed_used, current]
    controls = [locks, one_line, picker, after]
    for component in [*settings.values(), lines, seed, locks, one_line, rewrite_seed]:
        quiet_checks(component)
    gr.on(
        [button.click, characters.submit],
        generate,
        inputs_kwargs=GENERATE,
        outputs=shown,
        api_name="generate",
        api_description="Write a Tang poem; streams (poem HTML, plain text, seed used). Only `characters` is required.",
    ).success(
        lambda p, sc, lk: show_controls(p, sc, lk, True), [current, script, locks], controls, api_visibility="private"
    )  # fmt: skip
    rewrite_button.click(
        rewrite,
        inputs_kwargs={"poem": text, "keep": locks, **settings, "seed": rewrite_seed},
        outputs=shown,
        api_name="rewrite",
        api_description="Keep the lines numbered `keep` (from 1) of `poem`, rewrite the others; streams as /generate.",
    ).success(
        lambda p, sc, lk: show_controls(p, sc, lk, False), [current, script, locks], controls, api_visibility="private"
    )  # fmt: skip
    one_button.click(
        redo_line,
        inputs_kwargs={"poem": text, "line": one_line, **settings, "seed": rewrite_seed},
        outputs=shown,
        api_visibility="private",
    ).success(
        lambda p, sc, lk: show_controls(p, sc, lk, False), [current, script, locks], controls, api_visibility="private"
    )  # fmt: skip
    # On a narrow screen the poem sits below the form: a click brings it into view (in the browser, at once).
    gr.on(
        [button.click, characters.submit, rewrite_button.click, one_button.click],
        None,
        js=SCROLL_TO_POEM,
        api_visibility="private",
    )
    picker.input(show_candidate, [current, picker, script], [poem, text, locks, one_line], api_visibility="private")

demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=QUEUE_MAX_SIZE)

if __name__ == "__main__":
    try:
        get_model()  # fail at start-up, with the model error's one sentence, rather than on the first request
    except TangPoemError as exc:
        raise SystemExit(f"error: {exc} Set MODEL_ID to a model folder or a Hub repo id.") from None
    demo.launch(**STYLE)
