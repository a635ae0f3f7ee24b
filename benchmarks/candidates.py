"""What ranking candidates costs: one poem with ``--candidates 8`` against ``--candidates 1``.

    python benchmarks/candidates.py [--model M] [--repeats 5] [--candidates 8] [--threads 1]

Both settings run in this one process, alternating, so machine load hits both alike; each time
is the median of ``--repeats`` runs of one 七绝 (and one 七律), ranking whole poems (``search="poem"``)
under rhyme, relaxed tone and no repeats, seeds varying. The candidates of one poem are rows of one batch, so
they share every LSTM step; the goal is a ratio of at most 2.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tangpoem_hf.decoding import generate_poem
from tangpoem_hf.modeling import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder or Hub repo id (default: the bundled model)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    settings = {"search": "poem", "rhyme": True, "tone": "relaxed", "no_repeat": True}
    generate_poem(model, first="山", seed=0, **settings)  # warm-up
    print(f"{'poem':<6} {'1 candidate':>12} {f'{args.candidates} candidates':>14} {'ratio':>6}")
    for name, lines in (("七绝", 4), ("七律", 8)):
        times: dict[int, list[float]] = {1: [], args.candidates: []}
        for r in range(args.repeats):
            for n in times:
                start = time.perf_counter()
                generate_poem(model, first="山", lines=lines, seed=r, candidates=n, **settings)
                times[n].append(time.perf_counter() - start)
        one, many = statistics.median(times[1]), statistics.median(times[args.candidates])
        print(f"{name:<6} {one:>11.3f}s {many:>13.3f}s {many / one:>6.2f}")
    print("goal: ratio <= 2")


if __name__ == "__main__":
    main()
