"""The documentation runs as written: every Python block of the README, the guides and the bundled model
card, and every ``$ tangpoem generate ...`` sample of the README and the guides against the output it
shows; every link points at a file that exists."""

from __future__ import annotations

import ast
import contextlib
import io
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from tangpoem_hf.cli import main
from tangpoem_hf.modeling import BUNDLED_MODEL_DIR

ROOT = Path(__file__).resolve().parents[1]
GUIDES = sorted((ROOT / "docs" / "guide").glob("*.md"))
DOCS = [ROOT / "README.md", BUNDLED_MODEL_DIR / "README.md"]
DOCS += [p for p in GUIDES if "```python" in p.read_text(encoding="utf-8")]


def blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.M | re.S)


def documented_values(code: str) -> list[str]:
    """Quoted strings in ``print(...)  # ['...', ...]`` comments: what the block says it prints."""
    values = []
    for line in code.splitlines():
        if line.startswith("print(") and "  # [" in line:
            values += ast.literal_eval(line.split("  # ", 1)[1])
    return values


APP_URL = "http://127.0.0.1:7860/"


@contextlib.contextmanager
def serving_the_app() -> Iterator[str]:
    """``python app.py`` with the bundled model, on a free port (7860 may be taken on a shared machine)."""
    from test_app import import_app, serve

    with serve(import_app("tangpoem_app_for_docs")) as url:
        yield url


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run_as_written(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As written, except that a block that talks to the app reaches it on the port the test serves it on."""
    code_blocks = blocks(path, "python")
    assert code_blocks, f"{path} has no python block"
    monkeypatch.delenv("MODEL_ID", raising=False)
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(serving_the_app()) if any(APP_URL in c for c in code_blocks) else APP_URL
        stack.enter_context(contextlib.redirect_stdout(out))
        for code in code_blocks:  # one namespace: later blocks use the model of earlier ones
            exec(compile(code.replace(APP_URL, url), str(path), "exec"), namespace)
    printed = out.getvalue()
    for value in (v for code in code_blocks for v in documented_values(code)):
        assert value in printed, f"{path} says {value!r} is printed, but the code printed:\n{printed}"


def documented_samples() -> list[tuple[str, str]]:
    """(command, shown output) for each ``$ tangpoem generate ...`` line of the text blocks of the
    README and the guides."""
    samples = []
    for block in (b for path in [ROOT / "README.md", *GUIDES] for b in blocks(path, "text")):
        for part in re.split(r"\n(?=\$ )", block.strip()):
            command, _, output = part.partition("\n")
            if command.startswith("$ tangpoem generate "):
                samples.append((command[2:], output.strip()))
    return samples


@pytest.mark.parametrize(("command", "shown"), documented_samples(), ids=[c for c, _ in documented_samples()])
def test_documented_samples_match_the_bundled_model(command: str, shown: str, capsys: pytest.CaptureFixture) -> None:
    assert main(shlex.split(command)[1:]) == 0
    assert capsys.readouterr().out.strip() == shown


@pytest.mark.parametrize(
    "path",
    [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_relative_links_point_at_files(path: Path) -> None:
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8"))
    missing = [t for t in targets if not (path.parent / t).exists()]
    assert not missing, f"{path.relative_to(ROOT)} links to missing files: {missing}"


def test_readme_reads_in_five_minutes() -> None:
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 150
