import json
import subprocess
import sys

import pytest
from conftest import tiny_train_args

from tangpoem_hf.cli import main


def run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_generate_prints_a_poem(tiny_model_dir, capsys):
    code, out, _ = run(
        ["generate", "--model", str(tiny_model_dir), "--first", "山", "--form", "7", "--seed", "1"], capsys
    )
    assert code == 0
    rows = out.strip().split("\n")
    assert len(rows) == 2 and all(len(r) == 16 for r in rows) and rows[0][0] == "山"


def test_generate_json_and_num(tiny_model_dir, capsys):
    code, out, _ = run(
        [
            "generate",
            "--model",
            str(tiny_model_dir),
            "--acrostic",
            "春夜山月",
            "--form",
            "5",
            "--num",
            "3",
            "--seed",
            "4",
            "--json",
        ],
        capsys,
    )
    assert code == 0
    poems = json.loads(out)
    assert [p["seed"] for p in poems] == [4, 5, 6]
    assert all([line[0] for line in p["lines"]] == list("春夜山月") for p in poems)


def test_same_seed_same_output_as_api(tiny_model_dir, capsys):
    from tangpoem_hf import TangPoemLSTM
    from tangpoem_hf.decoding import generate_poem

    _, out, _ = run(["generate", "--model", str(tiny_model_dir), "--first", "月", "--seed", "9"], capsys)
    model = TangPoemLSTM.from_pretrained(tiny_model_dir)
    # 4 lines: rhyme and relaxed tone are on unless --free.
    assert out.strip() == generate_poem(model, first="月", seed=9, rhyme=True, tone="relaxed").text


def test_missing_model_folder(tmp_path, capsys):
    code, _, err = run(["generate", "--model", str(tmp_path / "none" / "x")], capsys)
    assert code == 2 and "does not exist" in err


def test_perplexity_command(tiny_model_dir, tmp_path, capsys):
    poems = tmp_path / "poems.txt"
    poems.write_text("白日依山盡，黃河入海流。欲窮千里目，更上一層樓。\n春眠不觉晓处处闻啼鸟\n\n", encoding="utf-8")
    code, out, _ = run(["perplexity", str(poems), "--model", str(tiny_model_dir)], capsys)
    assert code == 0
    last = out.strip().splitlines()[-1]
    assert last.startswith("perplexity: ") and float(last.split()[1]) > 1


def test_data_stats(small_corpus, capsys):
    code, out, _ = run(["data", "stats", "--corpus", str(small_corpus), "--json"], capsys)
    assert code == 0 and json.loads(out)["raw_poems"] == 64


def test_console_script_subprocess_has_no_traceback(tiny_model_dir):
    proc = subprocess.run(
        [sys.executable, "-m", "tangpoem_hf.cli", "generate", "--model", str(tiny_model_dir), "--first", "hello"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "only Chinese" in proc.stderr


def test_train_command_runs(small_corpus, tmp_path, capsys):
    code, out, _ = run(tiny_train_args(small_corpus, tmp_path / "r"), capsys)
    assert code == 0 and "Best model" in out


def test_train_resume_takes_the_saved_configuration(small_corpus, tmp_path, capsys):
    """`--out-dir X --resume` alone continues the run as configured (docs/guide/training.md's command)."""
    out = tmp_path / "r"
    args = [*tiny_train_args(small_corpus, out), "--lr-schedule", "cosine", "--checkpoint-every", "3"]
    args[args.index("--max-steps") + 1] = "6"
    assert run(args, capsys)[0] == 0
    uninterrupted = (out / "train_log.jsonl").read_text(encoding="utf-8")
    # as after a kill between steps 3 and 6: the latest checkpoint is step 3's
    (out / "checkpoints" / "latest.json").write_text(json.dumps({"checkpoint": "step-3"}), encoding="utf-8")
    code, printed, err = run(["train", "--out-dir", str(out), "--resume", "--no-progress"], capsys)
    assert code == 0, err
    assert (
        "Resumed from step 3." in printed and printed.rstrip().splitlines()[-1] == "Stopped at step 6: --max-steps 6."
    )

    # the same steps, losses and cosine learning rates as the run that was never stopped
    def steps(text: str) -> list[tuple]:
        return [(r["step"], r["loss"], r["lr"]) for r in map(json.loads, text.splitlines()) if "loss" in r]

    assert steps((out / "train_log.jsonl").read_text(encoding="utf-8")) == steps(uninterrupted)
    assert len(steps(uninterrupted)) == 6 and len({lr for _, _, lr in steps(uninterrupted)}) == 6  # cosine


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--hidden-size", "16"], "--hidden-size"),  # another architecture: the weights could not load
        (["--epochs", "9", "--bf16"], "--epochs, --bf16"),  # silently different training before
        (["--corpus", "elsewhere"], "--corpus"),  # other data
        (["--no-control", "--traditional"], "--no-control, --traditional"),  # switches named as typed
    ],
)
def test_train_resume_refuses_changed_flags(small_corpus, tmp_path, capsys, flags, named):
    out = tmp_path / "r"
    assert run(tiny_train_args(small_corpus, out), capsys)[0] == 0
    code, _, err = run(["train", "--out-dir", str(out), "--resume", *flags], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert named in err and "--out-dir" in err


@pytest.mark.parametrize(
    ("switch", "setting", "value"),
    [
        ("--traditional", "simplified", False),
        ("--tie-weights", "tie_weights", True),
        ("--locked-dropout", "locked_dropout", True),
        ("--bf16", "bf16", True),
        ("--no-bf16", "bf16", False),
        ("--compile", "compile", True),
        ("--no-progress", "progress", False),
        ("--freeze-embedding", "freeze_embedding", True),
        ("--no-control", "control", False),
    ],
)
def test_each_train_switch_sets_its_setting_and_no_other(switch, setting, value):
    """The switches come from TrainConfig's fields: each sets one setting, the rest keep their defaults."""
    from dataclasses import asdict

    from tangpoem_hf.cli import FINETUNE_DEFAULTS, _train_config, build_parser
    from tangpoem_hf.train_config import TrainConfig

    default = asdict(TrainConfig())
    for command, defaults in (("train", {}), ("finetune", FINETUNE_DEFAULTS)):
        given = asdict(_train_config(build_parser().parse_args([command, switch])))
        assert {k: v for k, v in given.items() if v != default[k]} == {**defaults, setting: value}


def test_train_resume_without_a_checkpoint_says_so(tmp_path, capsys):
    code, _, err = run(["train", "--out-dir", str(tmp_path / "none"), "--resume"], capsys)
    assert code == 2 and "holds no checkpoint" in err


@pytest.mark.parametrize(
    ("flag", "value", "fragment"),
    [
        ("--lr-schedule", "cosin", "--lr-schedule must be constant or cosine, not 'cosin'"),
        ("--optimizer", "adamm", "--optimizer must be adam, adamw, adagrad or sgd"),
        ("--mode", "ourz", "--mode must be ours or report"),
        ("--softmax", "fast", "--softmax must be full or adaptive"),
        ("--device", "gpu", "--device must be auto"),
        ("--batch-size", "0", "--batch-size must be at least 1"),
        ("--dropout", "1", "--dropout must lie in [0, 1)"),
    ],
)
def test_train_refuses_a_bad_choice_at_once(tmp_path, capsys, flag, value, fragment):
    """A typo in a choice used to train at a constant rate (or another default) without a word."""
    code, _, err = run(["train", "--out-dir", str(tmp_path / "r"), flag, value], capsys)
    assert code == 2 and fragment in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_the_last_line_says_why_a_run_stopped(small_corpus, tmp_path, capsys):
    """Steps or epochs, whichever came first, is named (fine-tuning's test covers --max-steps past --epochs)."""
    code, out, _ = run([*tiny_train_args(small_corpus, tmp_path / "s"), "--max-steps", "5"], capsys)
    assert code == 0 and out.rstrip().splitlines()[-1] == "Stopped at step 5: --max-steps 5."
    code, out, _ = run(
        [*tiny_train_args(small_corpus, tmp_path / "e"), "--max-steps", "100000", "--epochs", "1"], capsys
    )
    last = out.rstrip().splitlines()[-1]
    assert code == 0 and last.startswith("Stopped at step ") and last.endswith("the end of epoch 1 (--epochs 1).")


def test_evaluate_says_it_needs_the_corpus(monkeypatch, capsys):
    monkeypatch.delenv("TANGPOEM_CORPUS", raising=False)
    code, _, err = run(["evaluate", "--num", "2"], capsys)
    assert code == 2 and "tangpoem evaluate needs the corpus" in err and "--corpus" in err and err.count("\n") == 1
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "Needs the corpus (--corpus or $TANGPOEM_CORPUS)" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--form", "五"], "argument --form: invalid int value: '五'"),
        (["--form", "6"], "argument --form: invalid choice: 6"),
        (["--lines", "4.5"], "argument --lines: invalid int value: '4.5'"),
        (["--tone", "medium"], "argument --tone: invalid choice: 'medium'"),
        (["--seed", "abc"], "argument --seed: invalid int value: 'abc'"),
        (["--first", "山", "--acrostic", "春夏"], "Give either first characters or acrostic heads, not both."),
    ],
)
def test_an_argument_error_is_one_sentence_without_the_usage(tiny_model_dir, capsys, args, message):
    code, out, err = run(["generate", "--model", str(tiny_model_dir), *args], capsys)
    assert code == 2 and not out and err.count("\n") == 1, err
    assert err.startswith("tangpoem: error: ") and message in err and "usage" not in err


def test_help_still_shows_the_usage_and_each_command_its_own_defaults(capsys):
    from tangpoem_hf.options import default_of

    with pytest.raises(SystemExit) as info:
        main(["generate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert info.value.code == 0 and out.startswith("usage: tangpoem generate")
    assert f"sampling temperature [{default_of('temperature')}]" in out
    assert f"keep the best by score [{default_of('candidates')}]" in out
    assert f"--beam BEAM search lines: partial poems kept after each line [{default_of('beam')}]" in out
    assert (
        "Unless you ask otherwise: rhyme and relaxed tone, no repeated characters, one season, temperature 0.5, "
        "top-p 0.9, a line search (the best 4 partial poems kept after each line, 4 lines drawn for each)" in out
    )
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # what fine-tuning uses, not training's defaults
    assert "LSTM layers [the base model's; the bundled one's: 2]" in out
    assert "dropout on embeddings and LSTM outputs [the base model's; the bundled one's: 0.3]" in out
    assert "[a quarter of training's: adam 0.0005," in out and "[10]" in out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "LSTM layers [1]" in out and "dropout on embeddings and LSTM outputs [0.0]" in out


JING_YE_SI = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"


@pytest.mark.parametrize("command", [["check", JING_YE_SI], ["check", "床前明月光", "--json"]])
def test_a_closed_pipe_ends_quietly(command):
    """`tangpoem check … | head -1`: the reader leaves, and the command ends without a traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tangpoem_hf.cli", *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()  # closed before the command writes anything, so every write meets a broken pipe
    err = proc.stderr.read().decode()
    assert proc.wait() == 141 and err == ""


def test_check_output_is_labelled(capsys):
    code, out, _ = run(["check", "床前明月光"], capsys)
    assert code == 1 and "format  ✗ 1 line of 5 characters; a 绝句 has 4 lines and a 律诗 8" in out
    code, out, _ = run(["check", JING_YE_SI], capsys)
    heading = out.splitlines()[4]
    assert heading.split() == ["line", "pattern", "yours", "off"]
    # Each heading stands over its column: 5 characters are 10 columns wide, then two spaces.
    assert heading.index("pattern") - heading.index("line") == 12 == heading.index("yours") - heading.index("pattern")
    assert "pattern: the 平仄 the form asks for; yours: the poem's own" in out


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"title": "Hello"}, "Poem 2: its title may hold only Chinese characters, but contains 'H', 'e', 'l', 'o'."),
        ({"keywords": "明月 故乡 白日 黄河 千里"}, "Poem 2: give one to 4 keywords, not 5."),
        ({"keywords": ["明月", "moon"]}, "Poem 2: the keyword 'moon' may hold only Chinese characters."),
        ({"keywords": "明月 明月"}, "Poem 2: a keyword is given twice in 明月 明月."),
    ],
)
def test_perplexity_checks_titles_and_keywords_as_generate_does(tiny_model_dir, tmp_path, capsys, row, message):
    rows = [{"text": JING_YE_SI, "title": "静夜思"}, {"text": JING_YE_SI, **row}]
    path = tmp_path / "poems.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    code, out, err = run(["perplexity", str(path), "--model", str(tiny_model_dir)], capsys)
    assert code == 2 and out == "" and err == f"tangpoem: error: {message}\n"
