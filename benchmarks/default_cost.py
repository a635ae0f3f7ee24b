"""What a decoding costs: time per 七绝 as a ratio to one plain sample, measured in the same run.

    python benchmarks/default_cost.py [--settings JSON ...] [--repeats 8] [--model M] [--threads 1]

Each ``--settings`` (a JSON object of ``generate_poem`` keyword arguments; default: the line
search candidates for the default and today's app defaults) and the plain sample (no rules, one
candidate) run in this one process, alternating per repeat, so machine load hits them alike;
each time is the median over ``--repeats`` poems (first character 山, seeds varying). Goal
(issue 23): the default costs at most 4× a plain sample.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from tangpoem_hf.decoding import generate_poem
from tangpoem_hf.modeling import load_model

RULES = {"rhyme": True, "tone": "relaxed", "no_repeat": True}
CHOICES = [
    {**RULES, "candidates": 4},
    {**RULES, "search": "lines", "beam": 2, "line_candidates": 4},
    {**RULES, "search": "lines", "beam": 4, "line_candidates": 4},
    {**RULES, "search": "lines", "beam": 4, "line_candidates": 8},
]
GOAL = 4.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", type=json.loads, nargs="+", help="generate_poem keyword arguments (JSON)")
    parser.add_argument("--model", help="model folder or Hub repo id (default: the bundled model)")
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    arms = [{}, *(args.settings or CHOICES)]
    generate_poem(model, first="山", seed=0, **RULES)  # warm-up
    times: list[list[float]] = [[] for _ in arms]
    for r in range(args.repeats):
        for settings, row in zip(arms, times):
            start = time.perf_counter()
            generate_poem(model, first="山", form=7, lines=4, seed=r, **settings)
            row.append(time.perf_counter() - start)
    plain = statistics.median(times[0])
    print(f"{'s / 七绝':>9} {'× plain':>8}  settings")
    for settings, row in zip(arms, times):
        seconds = statistics.median(row)
        verdict = (
            ""
            if not settings
            else ("  ok" if seconds / plain <= GOAL else f"  misses by {seconds / plain / GOAL:.2f}×")
        )
        print(f"{seconds:>9.3f} {seconds / plain:>8.2f}  {json.dumps(settings) if settings else 'plain'}{verdict}")
    print(f"goal: at most {GOAL:g}× one plain sample")


if __name__ == "__main__":
    main()
