"""Constrained vs unconstrained decoding time, in one process, printing the ratio (goal ≤ 1.5).

Both runs decode the same batch with the same seeds; the runs alternate and the median of each is
compared, so a busy machine slows both alike. Without ``--model`` the bundled model is used when
it is there, else a random-weight model over a vocabulary of real characters (the worst case for
the ratio: a tiny network makes the masks a larger share of the step).

    python benchmarks/constrained_decoding.py [--model DIR] [--num 64] [--form 7] [--lines 8]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tangpoem_hf import CharTokenizer, TangPoemConfig, TangPoemLSTM
from tangpoem_hf.decoding import generate_poems
from tangpoem_hf.modeling import BUNDLED_MODEL_DIR, WEIGHTS_NAME, load_model
from tangpoem_hf.options import PLAIN_SAMPLE
from tangpoem_hf.prosody import check_poem, load_table
from tangpoem_hf.text import to_simplified
from tangpoem_hf.tokenizer import SPECIALS


def random_model(per_group: int = 40, hidden: int = 128) -> TangPoemLSTM:
    """A random-weight LSTM over the first characters of every 平水韵 group (a few thousand)."""
    table = load_table()
    chars = "".join(dict.fromkeys(to_simplified("".join(g.chars[:per_group] for g in table.groups))))
    tok = CharTokenizer(list(SPECIALS) + ["，", "。"] + list(chars))
    torch.manual_seed(0)
    model = TangPoemLSTM(TangPoemConfig(vocab_size=len(tok), embedding_dim=hidden, hidden_size=hidden))
    model.tokenizer = tok
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: bundled, else a random model)")
    parser.add_argument("--num", type=int, default=64)
    parser.add_argument("--form", type=int, default=7)
    parser.add_argument("--lines", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tone", default="relaxed", choices=("relaxed", "strict"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model:
        model, label = load_model(args.model), args.model
    elif (BUNDLED_MODEL_DIR / WEIGHTS_NAME).exists():
        model, label = load_model(None), "bundled"
    else:
        model, label = random_model(), "random weights"
    common = dict(num=args.num, form=args.form, lines=args.lines, seed=0)
    runs: dict[str, list[float]] = {"plain": [], "constrained": []}
    cpu: dict[str, list[float]] = {"plain": [], "constrained": []}  # less sensitive to a busy machine
    poems = []
    generate_poems(model, **{**common, "num": 4}, rhyme=True, tone=args.tone)  # warm-up, builds the mask cache
    for _ in range(args.repeats):
        for name, extra in (
            ("plain", PLAIN_SAMPLE),
            ("constrained", {**PLAIN_SAMPLE, "rhyme": True, "tone": args.tone}),
        ):
            t0, c0 = time.perf_counter(), time.process_time()
            out = generate_poems(model, **common, **extra)
            runs[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
            if name == "constrained":
                poems = out
    plain, constrained = statistics.median(runs["plain"]), statistics.median(runs["constrained"])
    passed = sum(check_poem(p.text).passed for p in poems)
    print(f"model: {label}, vocab {len(model.tokenizer)}, {args.num} poems of {args.lines}×{args.form}")
    print(f"unconstrained: {plain:.3f} s   constrained (rhyme + {args.tone} tone): {constrained:.3f} s")
    cpu_ratio = statistics.median(cpu["constrained"]) / statistics.median(cpu["plain"])
    print(f"ratio: {constrained / plain:.3f} wall, {cpu_ratio:.3f} CPU time (goal ≤ 1.5)")
    print(f"constrained poems passing the checker: {passed}/{len(poems)}")


if __name__ == "__main__":
    main()
