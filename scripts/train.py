"""Train a tangpoem model on CPU or GPU; the same as ``tangpoem train``.

python scripts/train.py --corpus DIR --out-dir runs/x [--bf16] [--resume]
torchrun --nproc_per_node N scripts/train.py ...   # DistributedDataParallel
python scripts/train.py --init-from DIR_OR_REPO_ID --corpus DIR_OR_FILE [--author 李白] ...  # fine-tune

With --init-from the run is ``tangpoem finetune`` (tangpoem_hf/finetune.py) with training's flag
defaults, except --lr (a quarter of training's); ``tangpoem finetune`` also defaults to 10 epochs,
early stopping after 3 validations without progress, and batch 32.
"""

import sys

from tangpoem_hf.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
