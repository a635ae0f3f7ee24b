"""DistributedDataParallel on 2 CPU processes (gloo) against one process with the same global batch."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tangpoem_hf.plotting import read_log

ROOT = Path(__file__).resolve().parents[1]


def _losses(out: Path) -> list[float]:
    return [r["loss"] for r in read_log(out / "train_log.jsonl")[0]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _args(corpus: Path, out: Path, batch: int) -> list[str]:
    return [
        "--corpus",
        str(corpus),
        "--out-dir",
        str(out),
        "--embedding-dim",
        "16",
        "--hidden-size",
        "32",
        "--batch-size",
        str(batch),
        "--seq-len",
        "8",
        "--max-steps",
        "12",
        "--lr",
        "0.01",
        "--no-progress",
        "--threads",
        "1",
        "--checkpoint-every",
        "6",
    ]


@pytest.mark.slow
def test_two_process_gloo_matches_single_process(small_corpus, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = tmp_path / "single"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), *_args(small_corpus, single, 4)],
        check=True,
        env=env,
        capture_output=True,
    )
    ddp = tmp_path / "ddp"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(_free_port()),
            str(ROOT / "scripts" / "train.py"),
            *_args(small_corpus, ddp, 2),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    # torchrun's own report ends stderr; a rank's error message comes before it
    assert proc.returncode == 0, proc.stderr[-8000:]
    a, b = _losses(single), _losses(ddp)
    assert len(a) == len(b) == 12
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-3, (a, b)
    # only rank 0 writes: one log line per step, one best model
    assert (ddp / "best" / "model.safetensors").exists()
