"""What a decoding costs: time per 七绝 as a ratio to one plain sample, measured in the same run.

    python benchmarks/default_cost.py [--settings JSON ...] [--repeats 8] [--model M] [--threads 1]

Each ``--settings`` (a JSON object of ``generate_poem`` keyword arguments; default: the one
default, ``{}``, and the cheaper line search and best-of-4 beside it) and the plain sample (no rules,
one candidate) run in this one process, alternating per repeat, so machine load hits them alike;
each time is the median over ``--repeats`` poems (first character 山, seeds varying). Goal
(issue 23): the default costs at most 4× a plain sample.

``--clients 8`` also serves each setting through :class:`~tangpoem_hf.serving.PoemServer` (the
app's batching loop, without the web layer that ``benchmarks/app_load.py`` adds): 8 threads with
``--repeats`` poems each, p95 latency against one client's p50 (goal: at most 5×).
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time

import torch

from tangpoem_hf.decoding import generate_poem
from tangpoem_hf.modeling import TangPoemLSTM, load_model
from tangpoem_hf.options import PLAIN_SAMPLE
from tangpoem_hf.serving import PoemServer

CHOICES = [{}, {"beam": 2}, {"search": "poem", "candidates": 4}]  # {}: generate_poem's defaults, the one default
GOAL, SERVER_GOAL = 4.0, 5.0


def served(model: TangPoemLSTM, settings: dict, clients: int, repeats: int) -> list[float]:
    """Latencies of ``clients`` threads, each asking the server for ``repeats`` 七绝 in turn."""
    server = PoemServer(model)
    latencies: list[float] = []

    def client(c: int) -> None:
        for r in range(repeats):
            start = time.perf_counter()
            for _ in server.stream(first="山", form=7, lines=4, seed=100 * c + r, **settings):
                pass
            latencies.append(time.perf_counter() - start)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    server.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", type=json.loads, nargs="+", help="generate_poem keyword arguments (JSON)")
    parser.add_argument("--model", help="model folder or Hub repo id (default: the bundled model)")
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clients", type=int, default=0, help="also serve this many clients at once (0: skip)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    arms = [PLAIN_SAMPLE, *(args.settings or CHOICES)]
    generate_poem(model, first="山", seed=0)  # warm-up
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
            if settings is PLAIN_SAMPLE
            else ("  ok" if seconds / plain <= GOAL else f"  misses by {seconds / plain / GOAL:.2f}×")
        )
        name = "plain" if settings is PLAIN_SAMPLE else json.dumps(settings)
        print(f"{seconds:>9.3f} {seconds / plain:>8.2f}  {name}{verdict}")
    print(f"goal: at most {GOAL:g}× one plain sample")
    if args.clients:
        print(f"\n{'p50 1 client':>12} {f'p95 {args.clients} clients':>14} {'ratio':>6}  settings")
        for settings in arms[1:]:
            one = statistics.median(served(model, settings, 1, args.repeats))
            many = statistics.quantiles(served(model, settings, args.clients, args.repeats), n=20)[18]
            print(f"{one:>11.3f}s {many:>13.3f}s {many / one:>6.2f}  {json.dumps(settings)}")
        print(f"goal: p95 at {args.clients} clients at most {SERVER_GOAL:g}× one client's p50")


if __name__ == "__main__":
    main()
