"""The app as a user meets it: headless Debian Chromium driven by Playwright, plus a screenshot.

Needs ``apt-get install chromium fonts-noto-cjk`` and ``pip install playwright`` (never
``playwright install``: the system Chromium is used through ``executable_path``). Skipped, with the
reason, when /usr/bin/chromium is missing; CI installs it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import make_tiny_model
from test_app import import_app, serve

from tangpoem_hf.modeling import BUNDLED_MODEL_DIR

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = ROOT / "docs" / "screenshot.png"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
POEMS = [
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。",
    "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
    "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。",
    "月落乌啼霜满天，江枫渔火对愁眠。姑苏城外寒山寺，夜半钟声到客船。",
    "秦时明月汉时关，万里长征人未还。但使龙城飞将在，不教胡马度阴山。",
]

if not CHROMIUM.exists():
    pytest.skip("/usr/bin/chromium is missing (apt-get install chromium fonts-noto-cjk)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")


def _model_folder(tmp: Path) -> Path:
    """The bundled model when it has been trained (a nicer screenshot), else a tiny random one."""
    if (BUNDLED_MODEL_DIR / "config.json").is_file():
        return BUNDLED_MODEL_DIR
    make_tiny_model(POEMS, hidden_size=16).save_pretrained(tmp / "tiny")
    return tmp / "tiny"


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("MODEL_ID", str(_model_folder(tmp_path)))
    monkeypatch.delitem(sys.modules, "tangpoem_app_browser", raising=False)
    with serve(import_app("tangpoem_app_browser")) as address:
        yield address


@contextmanager
def app_page(url: str) -> Iterator[sync_api.Page]:
    """The app loaded in headless Chromium, its characters box ready; the browser closes after."""
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
            page.goto(url, wait_until="domcontentloaded", timeout=60_000)
            page.locator("#tp-chars textarea, #tp-chars input").first.wait_for(timeout=60_000)
            yield page
        finally:
            browser.close()


def test_page_writes_a_poem_and_screenshot(url: str, tmp_path: Path) -> None:
    # The README's screenshot is refreshed only on request, so a test run leaves the checkout clean.
    shot = SCREENSHOT if os.environ.get("TANGPOEM_UPDATE_SCREENSHOT") == "1" else tmp_path / "screenshot.png"
    with app_page(url) as page:
        for label in ("模式 · Mode", "字 · Characters", "体裁 · Form", "句数 · Lines", "作诗 · Generate"):
            assert page.get_by_text(label, exact=False).first.is_visible(), label
        page.locator("#tp-chars textarea, #tp-chars input").first.fill("月")
        page.locator("#tp-generate").click()
        done = page.locator(".tp-poem:not(.tp-streaming):not(.tp-empty) .tp-meta")
        done.wait_for(timeout=60_000)
        rows = page.locator(".tp-poem .tp-row")
        assert rows.count() == 2  # a quatrain: two couplet rows
        first_line = page.locator(".tp-poem .tp-line").first.inner_text()
        assert first_line.startswith("月") and len(first_line) == 8  # 七言 + 「，」
        assert page.locator("text=Traceback").count() == 0
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def _poem_lines(page: sync_api.Page) -> list[str]:
    return [t.rstrip("，。") for t in page.locator(".tp-poem .tp-line").all_inner_texts()]


def test_lock_a_line_and_rewrite_the_others(url: str) -> None:
    with app_page(url) as page:
        page.locator("#tp-chars textarea, #tp-chars input").first.fill("月")
        page.locator("#tp-generate").click()
        page.locator(".tp-poem:not(.tp-streaming):not(.tp-empty) .tp-meta").wait_for(timeout=60_000)
        before = _poem_lines(page)
        assert len(before) == 4
        # The lock boxes now name the poem's lines; keep the second one.
        lock = page.locator("#tp-locks label", has_text=f"2 · {before[1]}")
        lock.wait_for(timeout=60_000)
        lock.click()
        page.locator("#tp-rewrite").click()
        page.wait_for_function(
            """old => {
                const poem = document.querySelector('.tp-poem');
                if (!poem || poem.classList.contains('tp-streaming')) return false;
                const lines = [...poem.querySelectorAll('.tp-line')].map(e => e.innerText.replace(/[，。]/g, ''));
                return lines.length === 4 && lines.join('|') !== old.join('|');
            }""",
            arg=before,
            timeout=60_000,
        )
        after = _poem_lines(page)
        assert after[1] == before[1]  # the locked line, unchanged
        assert all(after[i] != before[i] for i in (0, 2, 3)), (before, after)
        assert page.locator("#tp-locks input:checked").count() == 1  # the lock stays for the next round
        assert page.locator("text=Traceback").count() == 0
