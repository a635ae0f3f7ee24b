"""Give a model trained on packed streams its start state, without retraining.

    python scripts/store_start_state.py --model tangpoem_hf/pretrained --out runs/bundled-stored [--corpus DIR]

A model trained on packed streams has nearly always just read another poem when it reads ``<bos>``;
scored or generated from the all-zero state, it starts every poem in a state it never learned.
This stores the mean state at ``<bos>`` over the same training poems the trainer uses (every k-th of
the split the model was trained on; see ``Trainer.prepare``) and prints held-out perplexity from
zeros and from the stored state, on test poems the model never trained on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tangpoem_hf.batching import encode_poems
from tangpoem_hf.corpus import LEGACY_SPLIT, build_splits, never_trained_on, split_of
from tangpoem_hf.evaluation import perplexity
from tangpoem_hf.hub import read_training_info
from tangpoem_hf.modeling import TangPoemLSTM, mean_start_state
from tangpoem_hf.training import START_SAMPLE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a model folder trained on packed streams")
    parser.add_argument("--out", required=True, help="where to save the model with its start state")
    parser.add_argument("--corpus", help="chinese-poetry folder (default: $TANGPOEM_CORPUS)")
    args = parser.parse_args(argv)

    model = TangPoemLSTM.from_pretrained(args.model)
    if model.config.preprocessing != "ours" or model.config.start_state == "learned":
        print("Only a model trained on packed streams (preprocessing 'ours') takes a stored start state.")
        return 2
    info = read_training_info(args.model)
    version = info.get("split", LEGACY_SPLIT)
    splits, _ = build_splits(args.corpus, simplified=model.tokenizer.simplified)
    train = list(splits["train"]["text"])
    if version == LEGACY_SPLIT:  # its training poems are those the old split put into train
        train = [t for pid, t in zip(splits["train"]["id"], train) if split_of(pid) == "train"]
    test = never_trained_on(splits, "test", version)
    before = perplexity(model, test) if model.config.start_state == "zeros" else None
    sample = encode_poems(train, model.tokenizer, "ours")
    model.set_start_state(*mean_start_state(model, sample[:: max(1, len(sample) // START_SAMPLE)][:START_SAMPLE]))
    after = perplexity(model, test)
    model.save_pretrained(args.out)
    for stale in ("val_perplexity", "test_perplexity", "test_perplexity_fp32", "test_poems"):
        info.pop(stale, None)  # measured from zeros, perhaps on another split: bundle_model.py measures anew
    info.update(
        split=version, start_state_poems=START_SAMPLE, test_perplexity_zeros=round(before, 3) if before else None
    )
    (Path(args.out) / "training.json").write_text(json.dumps(info, indent=2, ensure_ascii=False), encoding="utf-8")
    start = f"from zeros {before:.2f}, " if before is not None else ""
    print(f"test perplexity on {len(test)} poems it never trained on: {start}from the stored state {after:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
