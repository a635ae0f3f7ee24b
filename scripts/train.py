"""Train a tangpoem model on CPU or GPU; the same as ``tangpoem train``.

python scripts/train.py --corpus DIR --out-dir runs/x [--bf16] [--resume]
torchrun --nproc_per_node N scripts/train.py ...   # DistributedDataParallel
"""

import sys

from tangpoem_hf.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
