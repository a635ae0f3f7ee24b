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
from conftest import QUATRAINS as POEMS
from conftest import make_tiny_model
from test_app import import_app, serve

from tangpoem_hf.modeling import BUNDLED_MODEL_DIR

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = ROOT / "docs" / "screenshot.png"
SCREENSHOT_NARROW = ROOT / "docs" / "screenshot-narrow.png"
WIDE, NARROW, HEIGHT = 1280, 420, 900
CHARS = "#tp-chars textarea, #tp-chars input"
DONE = ".tp-poem:not(.tp-streaming):not(.tp-empty) .tp-meta"
# What a first poem needs, by label: each must lie inside the first screen at 1280×900.
FIRST_SCREEN = ("字 · Characters", "体裁 · Form", "句数 · Lines", "主题 · Theme (optional)")
# What only makes sense once a poem exists: hidden before it.
AFTER_A_POEM = ("#tp-locks", "#tp-rewrite", "#tp-rewrite-one", "#tp-seed-used", "#tp-candidates")
# The box of the block that holds a label (the label's own box if it is in none), as [left, top, right, bottom].
BLOCK_BOX = """label => {
  const el = [...document.querySelectorAll("span, label, button")].find(e => e.textContent.trim() === label);
  if (!el) return null;
  const b = (el.closest(".block") || el).getBoundingClientRect();
  return [b.left, b.top, b.right, b.bottom];
}"""
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
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
def app_page(url: str, width: int = WIDE) -> Iterator[sync_api.Page]:
    """The app loaded in headless Chromium, its characters box ready; the browser closes after."""
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": HEIGHT}, locale="zh-CN")
            page.goto(url, wait_until="domcontentloaded", timeout=60_000)
            page.locator(CHARS).first.wait_for(timeout=60_000)
            yield page
        finally:
            browser.close()


def test_page_writes_a_poem_and_screenshot(url: str, tmp_path: Path) -> None:
    # The README's screenshot is refreshed only on request, so a test run leaves the checkout clean.
    shot = SCREENSHOT if os.environ.get("TANGPOEM_UPDATE_SCREENSHOT") == "1" else tmp_path / "screenshot.png"
    with app_page(url) as page:
        for label in ("模式 · Mode", "字 · Characters", "体裁 · Form", "句数 · Lines", "作诗 · Generate"):
            assert page.get_by_text(label, exact=False).first.is_visible(), label
        page.locator(CHARS).first.fill("月")
        page.locator("#tp-generate").click()
        done = page.locator(DONE)
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
        page.locator(CHARS).first.fill("月")
        page.locator("#tp-generate").click()
        page.locator(DONE).wait_for(timeout=60_000)
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


def _in_view(page: sync_api.Page, box: list[float] | None) -> bool:
    size = page.viewport_size
    assert box is not None and size is not None
    left, top, right, bottom = box
    return left >= 0 and top >= 0 and right <= size["width"] and bottom <= size["height"]


def _box(page: sync_api.Page, selector: str) -> list[float]:
    b = page.locator(selector).first.bounding_box()
    assert b is not None, selector
    return [b["x"], b["y"], b["x"] + b["width"], b["y"] + b["height"]]


def _write_a_poem(page: sync_api.Page) -> None:
    page.locator(CHARS).first.fill("月")
    page.locator("#tp-generate").click()
    page.locator(DONE).wait_for(timeout=60_000)
    page.locator("#tp-locks").wait_for(timeout=60_000)  # the co-writing tools follow the finished poem


def _panel_states(page: sync_api.Page) -> list[str]:
    """What each closed-or-open panel's header says about itself."""
    return page.evaluate(
        """() => [...document.querySelectorAll(".tp-panel > .label-wrap")]
            .map(e => getComputedStyle(e, "::after").content.replaceAll('"', ""))"""
    )


def test_the_first_screen_holds_a_first_poem(url: str) -> None:
    """At 1280×900: the characters, form, lines, theme, Generate and the poem, with nothing to scroll;
    the tools for a poem appear only once there is one, and the poem stays in view."""
    with app_page(url) as page:
        for label in FIRST_SCREEN:
            assert _in_view(page, page.evaluate(BLOCK_BOX, label)), label
        for selector in ("#tp-chars", "#tp-generate", "#tp-poem"):
            assert _in_view(page, _box(page, selector)), selector
        for selector in AFTER_A_POEM:
            assert not page.locator(selector).is_visible(), f"{selector} shows before there is a poem"
        assert not page.get_by_text("所用种子 · Seed used").is_visible()
        # The sampling and verse panels start closed, and say so in words; a click opens one and it says that.
        assert _panel_states(page) == ["展开 ▸ show", "展开 ▸ show"]
        assert not page.get_by_text("温度 · Temperature").is_visible()
        _write_a_poem(page)
        assert page.evaluate("window.scrollY") == 0 and _in_view(page, _box(page, ".tp-poem"))
        for selector in AFTER_A_POEM:
            assert page.locator(selector).is_visible(), f"{selector} is hidden after a poem"
        # The candidates are ranked poems, the first the one shown; no raw log-probability.
        first = page.locator(".tp-poem .tp-line").first.inner_text()
        labels = page.locator("#tp-candidates label").all_inner_texts()
        assert len(labels) >= 2 and labels[0].startswith("1. " + first)
        assert all(label.startswith(f"{k}. 月") and "-" not in label for k, label in enumerate(labels, 1)), labels
        page.locator(".tp-panel > .label-wrap").last.click()
        page.get_by_text("温度 · Temperature").wait_for(timeout=10_000)
        assert _panel_states(page) == ["展开 ▸ show", "收起 ▾ hide"]


def test_a_narrow_screen_does_not_scroll_sideways(url: str, tmp_path: Path) -> None:
    """At 420 px the poem goes under the form: no sideways scroll, and Generate brings the poem into view."""
    shot = SCREENSHOT_NARROW if os.environ.get("TANGPOEM_UPDATE_SCREENSHOT") == "1" else tmp_path / "narrow.png"
    with app_page(url, width=NARROW) as page:
        scroll_width = "document.documentElement.scrollWidth"
        assert page.evaluate(scroll_width) <= NARROW
        assert not _in_view(page, _box(page, "#tp-poem"))  # below the form before a poem…
        _write_a_poem(page)
        assert _in_view(page, _box(page, ".tp-poem"))  # …and scrolled into view after Generate
        assert page.evaluate(scroll_width) <= NARROW
        page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
