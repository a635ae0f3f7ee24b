"""One default for every interface: with nothing else said, the CLI, the app's handler, the HTTP API,
the poem server and the Python API write the same poem for the same request and seed."""

from __future__ import annotations

import pytest
from test_app import served  # noqa: F401  (the fixture starts the app once)

from tangpoem_hf.cli import main
from tangpoem_hf.decoding import generate_poem
from tangpoem_hf.options import GenerationOptions, verse_rules

REQUESTS = [
    {"first": "月", "seed": 3},
    {"first": "山", "form": 5, "lines": 8, "seed": 4},
    {"acrostic": "春江花月", "form": 5, "seed": 5},
    {"first": "白", "lines": 6, "seed": 6},
]


def cli_flags(request: dict) -> list[str]:
    return [part for name, value in request.items() for part in (f"--{name}", str(value))]


def app_inputs(request: dict) -> dict:
    """The same request as the app's controls: the mode and the characters box, the form radio."""
    ui = {
        "mode": "藏头" if "acrostic" in request else "续写",
        "characters": request.get("acrostic", request.get("first")),
    }
    if "form" in request:
        ui["form"] = {5: "五言", 7: "七言"}[request["form"]]
    return {**ui, **{k: v for k, v in request.items() if k in ("lines", "seed")}}


@pytest.mark.parametrize("request_", REQUESTS, ids=[str(r) for r in REQUESTS])
def test_every_interface_writes_the_same_poem_by_default(served, capsys, request_):  # noqa: F811
    app, _, client = served
    model = app.get_model()
    python = generate_poem(model, **request_).text
    assert main(["generate", "--model", app.MODEL_ID, *cli_flags(request_)]) == 0
    cli = capsys.readouterr().out.strip()
    handler = list(app.generate(**app_inputs(request_)))[-1][1]
    http = client.predict(**app_inputs(request_), api_name="/generate")[1]
    server = list(app.get_server().stream(**request_))[-1].text
    assert cli == python and handler == python and http == python and server == python


def test_the_default_is_regulated_verse_and_free_verse_is_one_switch_away(served, capsys):  # noqa: F811
    app, _, _ = served
    assert verse_rules(GenerationOptions()) == (True, "relaxed")
    model = app.get_model()
    free = generate_poem(model, first="月", seed=3, free=True).text
    assert free == generate_poem(model, first="月", seed=3, rhyme=False, tone="none").text
    assert main(["generate", "--model", app.MODEL_ID, "--first", "月", "--seed", "3", "--free"]) == 0
    assert capsys.readouterr().out.strip() == free


SEARCH = ("search", "beam", "line_candidates", "score", "coherence")


def test_the_search_settings_are_flags_and_controls_from_their_fields(served, capsys):  # noqa: F811
    """search, beam, line_candidates, score and coherence: a CLI flag and an app control each, with
    the field's default, range and choices, and what they say reaches the decoder."""
    from tangpoem_hf.cli import build_parser
    from tangpoem_hf.options import OPTIONS, default_of

    app, _, client = served
    for name in SEARCH:
        control, meta = app.GENERATE[name], OPTIONS[name].metadata
        assert control.value == default_of(name), name
        if meta["choices"]:
            assert [value for _, value in control.choices] == list(meta["choices"]), name
        else:
            assert (control.minimum, control.maximum, control.step) == meta["ui"], name
    args = build_parser().parse_args(
        ["generate", "--search", "poem", "--beam", "2", "--line-candidates", "3", "--score", "sum", "--coherence", "2"]
    )
    assert (args.search, args.beam, args.line_candidates, args.score, args.coherence) == ("poem", 2, 3, "sum", 2.0)
    model = app.get_model()
    asked = {"search": "lines", "beam": 2, "line_candidates": 3, "score": "sum", "coherence": 2.0}
    python = generate_poem(model, first="月", seed=3, **asked)
    assert python.text != generate_poem(model, first="月", seed=3).text  # the settings matter
    flags = [part for name, value in asked.items() for part in (f"--{name.replace('_', '-')}", str(value))]
    assert main(["generate", "--model", app.MODEL_ID, "--first", "月", "--seed", "3", *flags]) == 0
    assert capsys.readouterr().out.strip() == python.text
    _, text, _ = client.predict(characters="月", seed=3, **asked, api_name="/generate")
    assert text == python.text
