"""Train several recipes at once on one machine, for comparisons at an equal time budget."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path


def train_side_by_side(jobs: dict[str, list[str]], logs: Path, allowed: tuple[int, ...] = (0,)) -> None:
    """Run ``tangpoem train`` once per job, all at the same time, each logging to ``logs/NAME.log``.

    Recipes compared at an equal time budget must share one machine's load, or the budget means
    different amounts of work. An exit code outside ``allowed`` stops the comparison, naming the job.
    """
    procs = []
    for name, args in jobs.items():
        cmd = [sys.executable, "-m", "tangpoem_hf.cli", "train", *args]
        print("$", shlex.join(cmd), flush=True)
        log = open(logs / f"{name}.log", "a", encoding="utf-8")  # noqa: SIM115  (closed below)
        procs.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
    for name, proc, log in procs:
        code = proc.wait()
        log.close()
        if code not in allowed:
            raise SystemExit(f"training {name} failed (exit {code}); see {logs / f'{name}.log'}")
