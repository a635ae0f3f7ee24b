"""The constraint interface: stateless rule objects, per-poem state in the walk, notes for broken
rules, one request object, and a package without import cycles."""

from __future__ import annotations

import ast
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path

import pytest
import torch
from test_prosody import _model, _vocab_chars

from tangpoem_hf import InputError
from tangpoem_hf.constraints import PoemSpec
from tangpoem_hf.decoding import generate_poem, generate_poems
from tangpoem_hf.prosody import RhymeConstraint, ToneConstraint, check_poem, load_table, prosody_constraints
from tangpoem_hf.request import PoemRequest
from tangpoem_hf.serving import PoemServer

PACKAGE = Path(__file__).resolve().parents[1] / "tangpoem_hf"


@pytest.fixture(scope="module")
def model():
    return _model(_vocab_chars())


# --- one constraint object, many requests ------------------------------------------------------


def test_one_constraint_instance_serves_two_concurrent_requests(model):
    """Two server requests share one RegulatedVerse object and are decoded step by step together;
    each poem equals the poem decoded alone with its own fresh constraint."""
    shared = prosody_constraints(rhyme=True, tone="strict")
    asks = [{"form": 5, "lines": 8, "seed": 3}, {"form": 5, "lines": 8, "seed": 4, "first": "白日"}]
    alone = [generate_poem(model, rhyme=True, tone="strict", **a) for a in asks]
    entered, release = threading.Event(), threading.Event()

    def hold(_module: torch.nn.Module, _args: tuple) -> None:
        entered.set()
        release.wait(30)

    handle = model.register_forward_pre_hook(hold)
    server = PoemServer(model)
    results: list[object] = [None, None]
    try:
        streams = [server.stream(PoemRequest.build(model.tokenizer, constraints=shared, **a)) for a in asks]

        def run(i: int) -> None:
            results[i] = deque(streams[i], maxlen=1)[0]

        threads = [threading.Thread(target=run, args=(0,))]
        threads[0].start()
        assert entered.wait(30)  # the worker is held in the first request's first forward pass
        threads.append(threading.Thread(target=run, args=(1,)))
        threads[1].start()
        while server._incoming.qsize() < 1:  # the second request waits to join the same steps
            threading.Event().wait(0.005)
        handle.remove()
        release.set()
        for t in threads:
            t.join(60)
    finally:
        handle.remove()
        server.close()
    assert [p.text for p in results] == [p.text for p in alone]


def test_the_same_request_twice_gives_the_same_poem(model):
    request = PoemRequest.build(model.tokenizer, form=7, lines=8, seed=5, rhyme=True, tone="relaxed")
    assert generate_poem(model, request).text == generate_poem(model, request).text


def test_a_request_or_keywords_not_both(model):
    request = PoemRequest.build(model.tokenizer, form=5, seed=1)
    with pytest.raises(InputError, match="not both"):
        generate_poem(model, request, seed=2)
    assert generate_poems(model, request=request)[0].text == generate_poem(model, form=5, seed=1).text


# --- bug: a two-reading character ending line 1 came back as a rhyme ---------------------------


def test_a_two_reading_line_one_end_is_never_a_rhyme_again(model):
    tok = model.tokenizer
    spec = PoemSpec(form=5, lines=4)
    kan = tok.index["看"]  # 上平十四寒 and 去声十五翰: whether line 1 rhymes stays open
    assert load_table().tones("看") == {"平", "仄"}
    tone, rhyme = ToneConstraint("strict"), RhymeConstraint()
    tstate = tone.start(spec, tok, 1)
    rstate = rhyme.start(spec, tok, 1)
    rstate.tone = tstate
    assert int(rstate.first_line_rhyme()[0]) == -1
    tone.observe(4, spec, tstate, torch.tensor([kan]))
    rhyme.observe(4, spec, rstate, torch.tensor([kan]))
    assert not bool(rhyme.allowed(9, spec, rstate)[0, kan])


def test_the_reported_poem_no_longer_rhymes_qin_twice():
    from tangpoem_hf.modeling import load_model

    poem = generate_poem(load_model(), form=7, lines=8, rhyme=True, tone="strict", seed=15)
    report = check_poem(poem.text)
    assert report.rhyme_ok and report.repeated_rhymes == [], report.text_report()


# --- bug: forced characters that rule out the strict pattern ------------------------------------


def test_forced_characters_that_break_strict_tone_are_noted_and_relaxed_still_holds(model):
    for seed in range(4):
        poem = generate_poem(model, first="明月", form=5, lines=8, rhyme=True, tone="strict", seed=seed)
        report = check_poem(poem.text)
        assert report.passed, report.text_report()  # format, rhyme and the relaxed rule hold
        assert not report.strict_ok
        assert poem.notes == [
            "The strict tone rule is broken at line 1, character 1 (明, a character you gave): "
            "it is 平 where the pattern needs 仄."
        ]


@pytest.mark.parametrize("tone", ["relaxed", "strict"])
def test_no_poem_breaks_an_asked_rule_silently(model, tone):
    """Whatever the first characters, a poem fails the checker only with a note saying why."""
    firsts = ["明月", "白日依山", "风花雪月", "春", "江山看画", "一三白日依山尽"]
    for i, first in enumerate(firsts):
        for poem in generate_poems(model, 4, first=first, form=7, lines=4, rhyme=True, tone=tone, seed=i):
            report = check_poem(poem.text)
            ok = report.rhyme_ok and not report.repeated_rhymes and report.relaxed_ok
            ok = ok and (report.strict_ok or tone == "relaxed")
            assert ok or poem.notes, report.text_report()
            if not report.relaxed_ok or not report.rhyme_ok:
                assert any("line" in n for n in poem.notes)


# --- the package's import graph -------------------------------------------------------------------


def _imports(path: Path) -> set[str]:
    """The package modules ``path`` imports, at the top or inside functions."""
    names = {p.stem for p in PACKAGE.glob("*.py")}
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 1:
                found.update([module.split(".")[0]] if module else [a.name for a in node.names])
            elif module.startswith("tangpoem_hf."):
                found.add(module.split(".")[1])
            elif module == "tangpoem_hf":
                found.update(a.name for a in node.names)
    return found & names


def test_no_import_cycles():
    graph = {p.stem: _imports(p) - {p.stem} for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            raise AssertionError("import cycle: " + " → ".join([*path[path.index(node) :], node]))
        if node in done:
            return
        for dep in sorted(graph.get(node, ())):
            visit(dep, [*path, node])
        done.add(node)

    for module in sorted(graph):
        visit(module, [])


@pytest.mark.parametrize("module", ["constraints", "prosody", "decoding", "modeling", "serving"])
def test_each_module_imports_alone(module):
    code = f"import tangpoem_hf.{module}"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
