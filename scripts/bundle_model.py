"""Ship a trained model inside the package (tangpoem_hf/pretrained/), stored in fp16 if that is lossless enough.

    python scripts/bundle_model.py --model runs/bundled-v1/best [--corpus DIR] [--dtype float16]
    python scripts/bundle_model.py --card-only   # rewrite the bundled card (and paths) from its training.json

It measures the test-split perplexity of the fp32 weights and of the stored weights (on the test
poems the model never trained on: a model trained on the old split read some of today's), refuses a
storage dtype that moves it by 1% or more, and writes the model card with data, split, config,
training time and held-out test perplexity.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from tangpoem_hf.control import Control, cached_keywords, clean_title
from tangpoem_hf.corpus import LEGACY_SPLIT, build_splits, cache_dir, never_trained_on
from tangpoem_hf.hub import read_training_info, stage_model_folder
from tangpoem_hf.modeling import BUNDLED_MODEL_DIR, TangPoemLSTM
from tangpoem_hf.paths import portable_record
from tangpoem_hf.scoring import perplexity

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def theme_figures(model: TangPoemLSTM, test: Any, texts: list[str]) -> dict[str, float]:
    """Test perplexity of a control model told each poem's title, and its title and keywords (the
    keywords extracted from the poem, as in training), on the same poems as the plain figure."""
    keep = set(texts)
    titles = [clean_title(t, model.tokenizer.simplified) for t, x in zip(test["title"], test["text"]) if x in keep]
    ordered = [x for x in test["text"] if x in keep]
    keywords = cached_keywords(ordered, cache_dir())
    with_title = [Control(t) for t in titles]
    with_both = [Control(t, k) for t, k in zip(titles, keywords)]
    return {
        "test_perplexity_title": round(perplexity(model, ordered, controls=with_title), 3),
        "test_perplexity_title_keywords": round(perplexity(model, ordered, controls=with_both), 3),
    }


def rewrite_card(out: Path) -> int:
    """The card again from training.json, whose absolute paths become portable: no retraining."""
    info = portable_record(read_training_info(out))
    (out / "training.json").write_text(json.dumps(info, indent=2, ensure_ascii=False), encoding="utf-8")
    stage_model_folder(out, out, bundled=True)
    print(f"rewrote {out / 'README.md'} and the paths in {out / 'training.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a saved model folder (e.g. runs/NAME/best)")
    parser.add_argument(
        "--card-only", action="store_true", help="only rewrite --out's card and training.json paths; no weights"
    )
    parser.add_argument("--out", default=str(BUNDLED_MODEL_DIR), help="where to write the bundled model")
    parser.add_argument("--corpus", help="chinese-poetry folder (default: $TANGPOEM_CORPUS)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float16", help="storage dtype [float16]")
    parser.add_argument("--hardware", default=f"{platform.machine()} CPU, 2 cores", help="what it was trained on")
    parser.add_argument("--notes", help="a paragraph for the card on how it was trained (e.g. across several runs)")
    args = parser.parse_args(argv)
    if args.card_only:
        return rewrite_card(Path(args.out))
    if not args.model:
        parser.error("--model is required (or --card-only)")

    model = TangPoemLSTM.from_pretrained(args.model)
    splits, _ = build_splits(args.corpus, simplified=model.tokenizer.simplified)
    info = read_training_info(args.model)
    split_version = info.get("split", LEGACY_SPLIT)
    test_texts = never_trained_on(splits, "test", split_version)
    ppl32 = perplexity(model, test_texts)
    theme = theme_figures(model, splits["test"], test_texts) if model.config.control else {}

    stored = copy.deepcopy(model).to(DTYPES[args.dtype])
    stored.tokenizer = model.tokenizer
    with tempfile.TemporaryDirectory() as tmp:
        stored.save_pretrained(tmp)
        reloaded = TangPoemLSTM.from_pretrained(tmp)  # fp32 parameters, filled from the stored dtype
        ppl_stored = perplexity(reloaded, test_texts)
        change = abs(ppl_stored - ppl32) / ppl32
        print(f"test perplexity: fp32 {ppl32:.3f}, stored as {args.dtype} {ppl_stored:.3f} ({change:.3%} change)")
        if change >= 0.01:
            print(f"{args.dtype} storage moves test perplexity by {change:.2%}; use --dtype float32.", file=sys.stderr)
            return 1
        info.update(
            test_perplexity=round(ppl_stored, 3),
            test_perplexity_fp32=round(ppl32, 3),
            test_poems=len(test_texts),
            **theme,
            split=split_version,
            storage_dtype=args.dtype,
            hardware=args.hardware,
        )
        if args.notes:
            info["notes"] = args.notes
        (Path(tmp) / "training.json").write_text(json.dumps(info, indent=2, ensure_ascii=False), encoding="utf-8")
        out = Path(args.out)
        shutil.rmtree(out, ignore_errors=True)
        stage_model_folder(tmp, out, perplexity=ppl_stored, perplexity_split="test", bundled=True)
    for f in out.iterdir():
        f.chmod(0o644)  # temporary files are private; a packaged model must be readable by every user
    size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    print(f"bundled into {out} ({size:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
