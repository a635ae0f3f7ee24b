"""Bad input everywhere, property tests, killed and interrupted training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bad_inputs import BAD_INPUTS, CLI_FLAGS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tangpoem_hf import InputError, TangPoemLSTM
from tangpoem_hf.decoding import generate_poem, generate_poems, stream_poem
from tangpoem_hf.plotting import read_log
from tangpoem_hf.tokenizer import CharTokenizer

# --- the table, through the Python API and the CLI -----------------------------------------------


@pytest.mark.parametrize(("case", "kwargs", "message"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_api(tiny_model, case, kwargs, message):
    with pytest.raises(InputError, match=message) as info:
        generate_poem(tiny_model, **kwargs)
    text = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "\n" not in text and text.endswith(".") and len(text) < 300


# argparse itself refuses a non-integer seed and --first with --acrostic; a shell cannot pass a lone surrogate.
CLI_CASES = [c for c in BAD_INPUTS if c[0] not in ("seed-float", "seed-text", "surrogate", "first-and-acrostic")]


@pytest.mark.parametrize(("case", "kwargs", "message"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_input_cli(tiny_model_dir, case, kwargs, message, capsys):
    from tangpoem_hf.cli import main

    args = ["generate", "--model", str(tiny_model_dir)]
    for key, value in kwargs.items():
        args += [CLI_FLAGS[key], str(value)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("tangpoem: error: ") and message in err and "Traceback" not in err and err.count("\n") == 1


def test_cli_invalid_bytes_and_non_integer_seed(tiny_model_dir):
    """Bytes that are not UTF-8 reach Python as lone surrogates; a seed of 1.5 is refused by argparse."""
    base = [sys.executable, "-m", "tangpoem_hf.cli", "generate", "--model", str(tiny_model_dir)]
    proc = subprocess.run([*map(os.fsencode, base), b"--first", b"\xff\xfe"], capture_output=True)
    assert proc.returncode == 2 and b"surrogate" in proc.stderr and b"Traceback" not in proc.stderr
    proc = subprocess.run([*base, "--seed", "1.5"], capture_output=True, text=True)
    assert proc.returncode == 2 and "invalid int value" in proc.stderr and "Traceback" not in proc.stderr


def test_traditional_characters_are_converted_not_rejected(tiny_model):
    poem = generate_poem(tiny_model, first="黃鸝", form=7, seed=0)
    assert poem.lines[0].startswith("黄鹂")


# --- properties -----------------------------------------------------------------------------------

TEXT_FIELDS = st.sampled_from(["first", "acrostic", "keywords", "title"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=TEXT_FIELDS, value=st.text(max_size=40))
def test_arbitrary_unicode_never_crashes(tiny_model, field, value):
    kwargs = {field: value, "seed": 0, "form": 5}
    if field in ("keywords", "title"):
        kwargs["first"] = "山"
    try:
        poem = generate_poem(tiny_model, **kwargs)
    except InputError:
        return
    assert 2 <= len(poem.lines) <= 16 and all(len(line) == 5 for line in poem.lines)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(categories=("Lo",)), max_size=60))
def test_tokenizer_round_trips_in_vocabulary_text(text):
    tok = CharTokenizer.build([text + "山"], simplified=False)
    assert tok.decode(tok.encode(text)) == text
    assert CharTokenizer(tok.tokens, simplified=False).decode(tok.encode(text)) == text


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(form=st.sampled_from([5, 7]), lines=st.integers(2, 16), seed=st.integers(0, 2**31))
def test_generation_stops_within_its_bound(tiny_model, form, lines, seed):
    """One step per character, and a full poem, even from a model that only wants to stop."""
    from test_decoding import wants_to_stop, well_formed

    steps = list(stream_poem(wants_to_stop(tiny_model), first="山", form=form, lines=lines, seed=seed))
    assert len(steps) == form * lines
    well_formed(steps[-1], form, lines)


def test_determinism_across_batch_sizes(tiny_model):
    singles = [generate_poem(tiny_model, first="月", seed=s, temperature=1.5).text for s in range(10, 16)]
    for size in (1, 2, 6):
        batch = []
        for start in range(10, 16, size):
            n = min(size, 16 - start)
            batch += [p.text for p in generate_poems(tiny_model, n, first="月", seed=start, temperature=1.5)]
        assert batch == singles


# --- killed and interrupted training -----------------------------------------------------------


def _train_cmd(corpus: Path, out: Path, steps: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tangpoem_hf.cli",
        "train",
        "--corpus",
        str(corpus),
        "--out-dir",
        str(out),
        "--embedding-dim",
        "32",
        "--hidden-size",
        "96",
        "--batch-size",
        "4",
        "--seq-len",
        "16",
        "--epochs",
        "50",
        "--max-steps",
        str(steps),
        "--checkpoint-every",
        "5",
        "--no-progress",
        "--lr",
        "0.01",
        "--threads",
        "1",
    ]


def _logged_steps(out: Path) -> list[int]:
    log = out / "train_log.jsonl"
    if not log.exists():
        return []
    steps = []
    for line in log.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if "loss" in rec:
            steps.append(rec["step"])
    return steps


def _logged_losses(out: Path) -> list[float]:
    return [rec["loss"] for rec in read_log(out / "train_log.jsonl")[0]]


def _wait_for_step(proc: subprocess.Popen, step: int) -> None:
    """Block on the child's own report (its ``[val] ... step N`` line at each epoch's end) of step >= ``step``.

    No polling and no sleep: the event is a line on the pipe (the child runs unbuffered).
    """
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("[val]") and int(line.split(" step ")[1].split(":")[0]) >= step:
            return
    pytest.fail(f"training ended before step {step}: {proc.stderr.read() if proc.stderr else ''}")


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    tensors, meta = __import__("tangpoem_hf.checkpointing", fromlist=["load_latest"]).load_latest(
        folder / "checkpoints"
    )
    return {k: v for k, v in tensors.items() if k.startswith("model.")}, meta


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted_run(small_corpus, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    total = 120
    subprocess.run(_train_cmd(small_corpus, tmp_path / "full", total), check=True, env=env, capture_output=True)

    out = tmp_path / "killed"
    proc = subprocess.Popen(
        _train_cmd(small_corpus, out, total), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for_step(proc, 37)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _logged_steps(out)[-1]
    assert killed_at < total, "the kill came too late to test anything"

    resumed = subprocess.run(
        [*_train_cmd(small_corpus, out, total), "--resume"], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    restart = int(resumed.stdout.split("Resumed from step ")[1].split(".")[0])
    assert killed_at - restart <= 5, "more than the steps since the last checkpoint were redone"

    full, meta_full = _weights(tmp_path / "full")
    again, meta_again = _weights(out)
    assert meta_full["step"] == meta_again["step"] == total
    for key in full:
        assert torch.equal(full[key], again[key]), key  # bit-exact on CPU
    assert _logged_steps(out) == list(range(1, total + 1)), "every step is logged once, in order"
    assert _logged_losses(out) == _logged_losses(tmp_path / "full")
    loaded = TangPoemLSTM.from_pretrained(out / "best")
    assert len(generate_poem(loaded, first="山", form=5, seed=0).lines) == 4


@pytest.mark.slow
def test_sigint_saves_a_checkpoint_before_exiting(small_corpus, tmp_path):
    out = tmp_path / "interrupted"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        _train_cmd(small_corpus, out, 100_000), env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    _wait_for_step(proc, 12)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "checkpoint saved" in stdout
    _, meta = _weights(out)
    assert meta["step"] == _logged_steps(out)[-1]  # nothing lost: the last step is in the checkpoint
