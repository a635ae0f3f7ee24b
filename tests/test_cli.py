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


@pytest.mark.parametrize(
    "args",
    [
        ["--first", "abc"],
        ["--first", ""],
        ["--first", "龘"],
        ["--form", "6"],
        ["--lines", "17"],
        ["--lines", "-3"],
        ["--temperature", "0"],
        ["--temperature", "nan"],
        ["--top-p", "2"],
        ["--top-k", "0"],
    ],
)
def test_bad_input_exits_2_without_traceback(tiny_model_dir, capsys, args):
    code, _, err = run(["generate", "--model", str(tiny_model_dir), *args], capsys)
    assert code == 2
    assert err.startswith("tangpoem: error: ") and "Traceback" not in err and err.count("\n") == 1


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
