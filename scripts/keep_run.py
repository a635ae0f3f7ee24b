"""Keep a training run small enough to commit, and resume it on another machine.

    python scripts/keep_run.py runs/v5 kept/v5          # config, log, vocabulary, latest weights in fp16
    cp -r kept/v5 runs/v5 && tangpoem train --out-dir runs/v5 --resume   # on the next machine
    python scripts/keep_run.py --with-optimizer runs/optimizers/main-adam kept/optimizers/main-adam

A full checkpoint holds the weights four times (weights, Adam's two moments, the average); a lent
machine loses ``runs/`` when it goes. The copy holds the weights once, in fp16: the resume restarts
the optimiser and the average and warms the learning rate up again (``REWARM_STEPS``), so it continues
the same schedule and data order, not bit-exactly. ``--with-optimizer`` keeps the optimiser's state
too, in bf16, and the average in fp16 (for Adam three times the plain copy, half the full
checkpoint): the run goes on with the step sizes it had, which an experiment about optimisers needs.
"""

import argparse
import sys

from tangpoem_hf.errors import InputError
from tangpoem_hf.training import keep_portable


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a run folder (tangpoem train --out-dir) with a checkpoint")
    p.add_argument("dest", help="the folder to write the portable copy into")
    p.add_argument(
        "--with-optimizer", action="store_true", help="keep the optimiser's state (bf16) and the average (fp16) too"
    )
    args = p.parse_args(argv)
    try:
        step = keep_portable(args.run_dir, args.dest, optimizer=args.with_optimizer)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"kept step {step} of {args.run_dir} in {args.dest}; resume with: tangpoem train --out-dir <copy> --resume")
    return 0


if __name__ == "__main__":
    sys.exit(main())
